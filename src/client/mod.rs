//! Client-side pieces that live in the library: today the partitioner.

pub mod partitioner;
