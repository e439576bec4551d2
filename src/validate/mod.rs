//! Validation at the door: every CRI request is checked here before any handler runs, so no
//! netns, cgroup, CNI call, monitor request or file is made from a field that was not checked.
//! A refusal names the field path (`config.metadata.name`, `config.mounts[2].host_path`) and
//! the rule it broke; the server answers it with InvalidArgument.
//!
//! `rules.rs` holds the rules shared by many fields, `resources.rs` the Linux resource
//! ranges, `runtime.rs` and `image.rs` one `Validate` impl per request of each service.
//! Protobuf strings are UTF-8 already: prost refuses anything else while decoding, and
//! `cri::codec` answers that with InvalidArgument too.

mod configs;
mod image;
mod resources;
mod rules;
mod runtime;
#[cfg(test)]
mod tests;

/// A request field that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Where the field sits in the request, e.g. `config.labels["app"]`.
    pub field: String,
    /// The rule, e.g. `must be an absolute path`.
    pub rule: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

impl std::error::Error for Invalid {}

/// A request that can be checked on its own, before anything is looked up or made.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid>;
}

/// The request inside a tonic request, once it passed its checks.
pub fn checked<T: Validate>(request: tonic::Request<T>) -> Result<T, tonic::Status> {
    let request = request.into_inner();
    request.validate()?;
    Ok(request)
}

pub(crate) fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}
