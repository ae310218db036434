//! webhook destination (stub).
