//! Validation of the `[[fault]]` tables: each kind checks its own keys (in its
//! nemesis file); here the checks every kind shares — the target exists and the
//! backend can do what the kind needs.

use super::locate::Validator;
use super::{ScenarioError, StackPlan};
use crate::nemesis::{FaultPlan, PlanCtx, RawFault, ALL_SERVICES};

/// Turns the raw fault tables into plans, in file order.
pub(super) fn validate(
    v: &Validator<'_>,
    raw: Vec<RawFault>,
    stack: &StackPlan,
) -> Result<Vec<FaultPlan>, ScenarioError> {
    if raw.is_empty() {
        return Err(v.err("fault", None, "at least one [[fault]] is required"));
    }
    let ctx = PlanCtx {
        backend: stack.backend(),
        capabilities: stack.capabilities(),
    };
    let known = stack.service_names();
    let mut faults = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
        let plan = f
            .plan(&ctx)
            .map_err(|e| v.err_in("[[fault]]", i, e.key, e.value.as_deref(), e.message))?;
        let kind = plan.kind.name();
        if let Some(cap) = ctx.capabilities.lacks(plan.kind.needs()) {
            return Err(v.err_in(
                "[[fault]]",
                i,
                "kind",
                Some(kind),
                format!(
                    "`{kind}` needs the {} backend: the {} backend cannot {}",
                    if cap == crate::stack::Capability::Link {
                        "process"
                    } else {
                        "docker"
                    },
                    ctx.backend,
                    cap.describe()
                ),
            ));
        }
        let target = &plan.target;
        if plan.kind.targets_link() {
            let links = stack.link_names();
            if !links.contains(target) {
                return Err(v.err_in(
                    "[[fault]]",
                    i,
                    "target",
                    Some(&format!("\"{target}\"")),
                    if links.is_empty() {
                        format!("`{kind}` acts on a link, and the stack has none: add a [[stack.link]] named `{target}`")
                    } else {
                        format!("unknown link `{target}`; links are: {}", links.join(", "))
                    },
                ));
            }
            faults.push(plan);
            continue;
        }
        if let (Some(k), Some(missing)) = (
            known.as_ref(),
            plan.kind
                .services()
                .into_iter()
                .find(|s| !known.as_ref().is_some_and(|k| k.contains(s))),
        ) {
            return Err(v.err_in(
                "[[fault]]",
                i,
                "groups",
                None,
                format!(
                    "unknown service `{missing}`; services are: {}",
                    k.join(", ")
                ),
            ));
        }
        let exists = known.as_ref().is_none_or(|k| k.contains(target));
        if target != ALL_SERVICES && !exists {
            return Err(v.err_in(
                "[[fault]]",
                i,
                "target",
                Some(&format!("\"{target}\"")),
                format!(
                    "unknown target `{target}`; services are: {}",
                    known.unwrap_or_default().join(", ")
                ),
            ));
        }
        faults.push(plan);
    }
    Ok(faults)
}
