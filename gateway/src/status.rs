//! Store failures as gRPC statuses: the one place where each kind of
//! [`StoreError`] gets its code, so that every service answers the same
//! failure the same way. Callers log the failure with their context first;
//! the status never carries the backend's message.

use crate::store::StoreError;
use tonic::Status;

/// The status for a store failure. `not_done` tells the caller what did not
/// happen (e.g. that a batch was not applied and may be re-sent), for the
/// failures after which repeating the call may succeed.
pub fn store_status(e: &StoreError, not_done: &str) -> Status {
    match e {
        // An unclassified backend failure left nothing done either (its
        // transaction did not commit): worth repeating, like unavailability.
        StoreError::Unavailable { .. } | StoreError::Backend { .. } => {
            Status::unavailable(not_done)
        }
        StoreError::Conflict { .. } => Status::aborted(not_done),
        StoreError::Corrupt { .. } => Status::data_loss("stored data is corrupt"),
        StoreError::Proof(p) => Status::invalid_argument(p.to_string()),
        // Found when the store is opened, before anything is served.
        StoreError::Schema(_) => Status::failed_precondition("the store's schema is not usable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_kind_of_failure_has_its_code() {
        let cases = [
            (StoreError::unavailable("closing"), Code::Unavailable),
            (StoreError::backend("odd"), Code::Unavailable),
            (StoreError::conflict("raced"), Code::Aborted),
            (StoreError::corrupt("leaf 3 is missing"), Code::DataLoss),
            (
                StoreError::Proof(tlog::ProofError::InvalidSizes { size1: 0, size2: 1 }),
                Code::InvalidArgument,
            ),
        ];
        for (e, code) in cases {
            let status = store_status(&e, "nothing was done");
            assert_eq!(status.code(), code, "{e}");
            // The backend's own words stay in the logs.
            assert!(!status.message().contains("closing"), "{status:?}");
        }
    }
}
