//! Offline next-item evaluation. Owned by the recommendations helper.
