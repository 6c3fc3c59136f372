pub mod policy_cmd;
