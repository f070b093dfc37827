//! Datasets the node trains on.
pub(crate) mod synthetic;
