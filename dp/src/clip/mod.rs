//! Per-sample clipping engine (in progress).
