//! What a profile's action and comparison names mean to libseccomp.

use libseccomp::{ScmpAction, ScmpCompareOp};

use super::{EPERM, SeccompError};

/// Checks an action name (and its errno) the way [`action`] will read it.
pub(super) fn check_action(
    name: &str,
    errno: Option<u32>,
    rule: Option<&str>,
) -> Result<(), SeccompError> {
    action(name, errno, rule).map(|_| ())
}

/// The libseccomp action for a profile's action name. `errno` is the `errnoRet` of
/// `SCMP_ACT_ERRNO` (EPERM when missing) or the message of `SCMP_ACT_TRACE`.
pub(super) fn action(
    name: &str,
    errno: Option<u32>,
    rule: Option<&str>,
) -> Result<ScmpAction, SeccompError> {
    let rule = || rule.map(str::to_string);
    let value = || {
        let errno = errno.unwrap_or(EPERM);
        u16::try_from(errno).map_err(|_| SeccompError::BadErrno {
            action: name.to_string(),
            errno,
            rule: rule(),
        })
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(i32::from(value()?)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(value()?),
        "SCMP_ACT_NOTIFY" => {
            return Err(SeccompError::UnsupportedAction {
                action: name.to_string(),
                rule: rule(),
                reason: "ferrocri has no seccomp notification agent",
            });
        }
        _ => {
            return Err(SeccompError::UnknownAction {
                action: name.to_string(),
                rule: rule(),
            });
        }
    })
}

/// The libseccomp operator for a profile's operator name. For `SCMP_CMP_MASKED_EQ` the
/// profile's `value` is the mask and `valueTwo` the value the masked argument must equal.
pub(super) fn compare_op(name: &str, mask: u64) -> Option<ScmpCompareOp> {
    Some(match name {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(mask),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
