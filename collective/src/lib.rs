//! Collectives: ring all-reduce over attested TLS links (NCCL within one VM behind a feature).
