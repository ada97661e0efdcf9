//! Validation of the `[[workload]]` tables: each kind checks its own keys (in its
//! workload file); here the check every kind shares — names are unique.

use super::locate::Validator;
use super::ScenarioError;
use crate::workload::{RawWorkload, WorkloadPlan};

/// Turns the raw workload tables into plans, in file order.
pub(super) fn validate(
    v: &Validator<'_>,
    raw: Vec<RawWorkload>,
) -> Result<Vec<WorkloadPlan>, ScenarioError> {
    let mut out: Vec<WorkloadPlan> = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let plan = w
            .plan(i)
            .map_err(|e| v.err_in("[[workload]]", i, e.key, e.value.as_deref(), e.message))?;
        if out.iter().any(|o| o.name == plan.name) {
            return Err(v.err_in(
                "[[workload]]",
                i,
                "name",
                Some(&plan.name),
                format!("duplicate workload name `{}`", plan.name),
            ));
        }
        out.push(plan);
    }
    Ok(out)
}
