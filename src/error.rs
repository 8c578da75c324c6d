//! Exit codes: how a command's failure maps to the process status.
//!
//! Each module has its own error enum that keeps its cause; this module only
//! decides what the operator's shell sees.

/// Process exit status for a failed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Configuration is invalid (fix the named key).
    Config = 2,
    /// `check` found something that stops the connector.
    CheckFailed = 3,
    /// The server, slot or spool is not in a state to run (see the message).
    NotReady = 4,
    /// Anything else.
    Failure = 1,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
