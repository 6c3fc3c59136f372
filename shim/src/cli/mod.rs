pub mod check_cmd;
pub mod events_cmd;
pub mod policy_cmd;
pub mod run_cmd;
