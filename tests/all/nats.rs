//! NATS tests (to come).
