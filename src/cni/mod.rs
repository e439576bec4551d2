//! CNI: the network configuration pods use and running its plugins for each pod.

pub mod config;
pub mod default;
pub mod invoke;
pub mod result;

mod cache;

#[cfg(test)]
mod real_tests;
