//! Validation of the `[[fault]]` tables and their `[[fault.then]]` follow-ups:
//! each kind checks its own keys (in its nemesis file); here the checks every kind
//! shares — the target exists and the backend can do what the kind needs.

use super::locate::Validator;
use super::{ScenarioError, StackPlan};
use crate::nemesis::{FaultPlan, FollowUp, PlanCtx, RawFault, RawFaultTable, ALL_SERVICES};

/// Turns the raw fault tables into plans, in file order.
pub(super) fn validate(
    v: &Validator<'_>,
    raw: Vec<RawFaultTable>,
    stack: &StackPlan,
) -> Result<Vec<FaultPlan>, ScenarioError> {
    if raw.is_empty() {
        return Err(v.err("fault", None, "at least one [[fault]] is required"));
    }
    let ctx = PlanCtx {
        backend: stack.backend(),
        capabilities: stack.capabilities(),
    };
    let mut faults = Vec::new();
    // Follow-ups are numbered across the file, as their headers appear in it.
    let mut then_index = 0;
    for (i, table) in raw.into_iter().enumerate() {
        let mut plan = one(v, &ctx, stack, "[[fault]]", i, table.fault)?;
        for f in table.then {
            let fault = one(v, &ctx, stack, "[[fault.then]]", then_index, f.fault)?;
            // A probe's event is checked once the probes are known.
            if let (Some(w), Some(known)) = (
                f.when.as_ref().filter(|w| !w.event.is_probe()),
                stack.service_names(),
            ) {
                if !known.contains(&w.service) {
                    return Err(v.err_in(
                        "[[fault.then]]",
                        then_index,
                        "when",
                        None,
                        format!(
                            "`{w}`: unknown service `{}`; services are: {}",
                            w.service,
                            known.join(", ")
                        ),
                    ));
                }
            }
            then_index += 1;
            plan.then.push(FollowUp {
                after: f.after,
                when: f.when,
                fault,
            });
        }
        faults.push(plan);
    }
    Ok(faults)
}

/// One fault table (the `i`-th `header` of the file) into a plan.
fn one(
    v: &Validator<'_>,
    ctx: &PlanCtx,
    stack: &StackPlan,
    header: &str,
    i: usize,
    raw: RawFault,
) -> Result<FaultPlan, ScenarioError> {
    let known = stack.service_names();
    {
        let plan = raw
            .plan(ctx)
            .map_err(|e| v.err_in(header, i, e.key, e.value.as_deref(), e.message))?;
        let kind = plan.kind.name();
        if let Some(cap) = ctx.capabilities.lacks(plan.kind.needs()) {
            return Err(v.err_in(
                header,
                i,
                "kind",
                Some(kind),
                if cap == crate::stack::Capability::PowerLoss {
                    format!(
                        "`{kind}` needs a stack rebound brings up with its data on the power-loss layer (the process backend's durable-dirs, or a docker compose file with `durable`): the {} backend here cannot {}",
                        ctx.backend,
                        cap.describe()
                    )
                } else {
                    format!(
                        "`{kind}` needs the {} backend: the {} backend cannot {}",
                        if cap == crate::stack::Capability::Link {
                            "process"
                        } else {
                            "docker"
                        },
                        ctx.backend,
                        cap.describe()
                    )
                },
            ));
        }
        let target = &plan.target;
        if plan.kind.targets_link() {
            let links = stack.link_names();
            if !links.contains(target) {
                return Err(v.err_in(
                    header,
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
            return Ok(plan);
        }
        if let (Some(k), Some(missing)) = (
            known.as_ref(),
            plan.kind
                .services()
                .into_iter()
                .find(|s| !known.as_ref().is_some_and(|k| k.contains(s))),
        ) {
            return Err(v.err_in(
                header,
                i,
                "groups",
                None,
                format!(
                    "unknown service `{missing}`; services are: {}",
                    k.join(", ")
                ),
            ));
        }
        if plan
            .kind
            .needs()
            .contains(&crate::stack::Capability::PowerLoss)
        {
            let durable = stack.durable_services();
            let key = if stack.backend() == "docker" {
                "[stack] durable"
            } else {
                "durable-dirs"
            };
            if durable.is_empty() {
                return Err(v.err_in(
                    header,
                    i,
                    "kind",
                    Some(kind),
                    format!("`{kind}` acts on services whose data is on the power-loss layer, and none is: name them with {key}"),
                ));
            }
            if target != ALL_SERVICES && !durable.contains(target) {
                return Err(v.err_in(
                    header,
                    i,
                    "target",
                    Some(&format!("\"{target}\"")),
                    format!(
                        "`{target}` has no data on the power-loss layer ({key}); those that do: {}",
                        durable.join(", ")
                    ),
                ));
            }
        }
        let exists = known.as_ref().is_none_or(|k| k.contains(target));
        if target != ALL_SERVICES && !exists {
            return Err(v.err_in(
                header,
                i,
                "target",
                Some(&format!("\"{target}\"")),
                format!(
                    "unknown target `{target}`; services are: {}",
                    known.unwrap_or_default().join(", ")
                ),
            ));
        }
        Ok(plan)
    }
}
