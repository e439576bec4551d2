//! Turning domain errors into gRPC statuses, in one place.

use tonic::Status;

use crate::store::StoreError;

/// The answer of an RPC ferrocri does not serve (yet): names the RPC and why.
pub fn pending(rpc: &str, why: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by ferrocri: {why}"))
}

/// A request field with a bad value: names the field.
pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match e {
            StoreError::NameInUse { .. } => Status::already_exists(e.to_string()),
            _ => Status::internal(e.to_string()),
        }
    }
}
