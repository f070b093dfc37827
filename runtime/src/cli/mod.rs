//! One module per `bastion` subcommand.
pub(crate) mod attest;
pub(crate) mod cluster;
pub(crate) mod model;
pub(crate) mod node;
pub(crate) mod party;
pub(crate) mod privacy;
pub(crate) mod progress;
pub(crate) mod receipt;
pub(crate) mod train;
