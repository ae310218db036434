//! Black-box tests: the real application on a random port, local servers standing
//! in for Slack and Teams, a real SMTP server, the real binary for the CLI.

mod admin;
mod cli;
mod delivery;
mod destinations;
mod digest;
mod discord;
mod email;
mod google_chat;
mod group;
mod helpers;
mod ingest;
mod limits;
mod mattermost;
mod ntfy;
mod pagerduty;
mod process;
mod readiness;
mod regressions;
mod retention;
mod telegram;
mod ui;
mod ui_browser;
mod ui_webdriver;
mod watch;
