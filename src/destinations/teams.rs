//! teams destination (stub).
