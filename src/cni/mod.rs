//! CNI: the network configuration pods use and (later) running its plugins.

pub mod config;
