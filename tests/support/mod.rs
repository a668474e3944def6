//! What several test files share.

pub mod backends;
pub mod component_fuzz;
pub mod core_abi_fuzz;
pub mod rust_guests;
