//! Address management: the pure allocator, its crash-safe store, and delegation to other plugins.

pub mod delegate;
pub mod pool;
pub mod store;
