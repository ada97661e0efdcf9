//! Documented exit codes of the `rebound` binary, shared by every command.

/// What a `rebound` process exits with. README documents the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    /// 0: every SLO was met.
    SloMet,
    /// 1: an SLO was violated.
    SloViolated,
    /// 2: the trials run so far cannot decide the SLO either way.
    Inconclusive,
    /// 3: the scenario file or the command line is invalid.
    Invalid,
    /// 4: the stack could not be brought up or healed.
    StackFailure,
    /// 130: interrupted (Ctrl-C / SIGTERM / SIGHUP); faults were healed, finished trials kept.
    Interrupted,
}

impl ExitStatus {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::SloMet => 0,
            ExitStatus::SloViolated => 1,
            ExitStatus::Inconclusive => 2,
            ExitStatus::Invalid => 3,
            ExitStatus::StackFailure => 4,
            ExitStatus::Interrupted => 130,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_table() {
        let table = [
            (ExitStatus::SloMet, 0),
            (ExitStatus::SloViolated, 1),
            (ExitStatus::Inconclusive, 2),
            (ExitStatus::Invalid, 3),
            (ExitStatus::StackFailure, 4),
            (ExitStatus::Interrupted, 130),
        ];
        for (status, code) in table {
            assert_eq!(status.code(), code, "{status:?}");
        }
    }
}
