//! `type: console`: prints the message to standard output (stub).

use async_trait::async_trait;

use super::{Destination, Message, Request, SendError, Sent};

#[derive(Debug, Default)]
pub struct Console {}

#[async_trait]
impl Destination for Console {
    fn prepare(&self, _msg: &Message) -> Result<Request, SendError> {
        Ok(Request::Console(String::new()))
    }
    async fn send(&self, _req: &Request) -> Result<Sent, SendError> {
        Ok(Sent { status: None })
    }
}
