//! slack destination (stub).
