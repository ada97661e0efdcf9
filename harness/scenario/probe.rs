//! Validation of the `[[probe]]` tables: each kind checks its own keys (in its probe
//! file); here the checks every kind shares — names are unique, the service exists
//! and the backend can do what the kind needs.

use std::collections::HashSet;
use std::time::Duration;

use super::locate::Validator;
use super::{ScenarioError, StackPlan};
use crate::probe::{ProbeCtx, ProbePlan, RawProbe};

/// Turns the raw probe tables into plans, in file order.
pub(super) fn validate(
    v: &Validator<'_>,
    raw: Vec<RawProbe>,
    stack: &StackPlan,
    default_period: Duration,
) -> Result<Vec<ProbePlan>, ScenarioError> {
    if raw.is_empty() {
        return Err(v.err(
            "probe",
            None,
            "at least one [[probe]] is required: rebound must be able to tell when the stack is up",
        ));
    }
    let known = stack.service_names();
    let mut names = HashSet::new();
    let mut probes = Vec::new();
    for (index, p) in raw.into_iter().enumerate() {
        let err = |key: &str, value: Option<&str>, message: String| {
            v.err_in("[[probe]]", index, key, value, message)
        };
        let ctx = ProbeCtx {
            index,
            default_period,
        };
        let plan = p
            .plan(&ctx)
            .map_err(|e| err(e.key, e.value.as_deref(), e.message))?;
        if stack.capabilities().lacks(plan.check.needs()).is_some() {
            return Err(err(
                "kind",
                None,
                "this probe kind needs the docker backend".into(),
            ));
        }
        if let Some(service) = plan.check.service() {
            if !known
                .as_ref()
                .is_none_or(|k| k.iter().any(|s| s == service))
            {
                return Err(err(
                    "service",
                    Some(service),
                    format!(
                        "unknown service `{service}`; services are: {}",
                        known.clone().unwrap_or_default().join(", ")
                    ),
                ));
            }
        }
        if !names.insert(plan.name.clone()) {
            return Err(err(
                "name",
                Some(&plan.name),
                format!("duplicate probe name `{}`", plan.name),
            ));
        }
        probes.push(plan);
    }
    Ok(probes)
}
