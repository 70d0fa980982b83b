//! kairos-http
