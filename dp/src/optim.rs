//! DP optimizer (in progress).
