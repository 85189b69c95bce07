//! The thread driver: runs a [`Node`] on a thread of its own against the wall clock. It ticks at
//! `tick_interval`, feeds in transport messages, callers' requests and background jobs' events,
//! and steps the node with all that arrived together so that one Ready (one fsync) serves them.

use std::time::Duration;

use crossbeam_channel::Receiver;

use super::{Input, Node, Request};
use crate::message::{NodeId, RaftMessage};

/// At most this many queued messages and requests share one Ready.
const BATCH: usize = 4096;

pub(crate) fn run(
    mut node: Node,
    requests: Receiver<Request>,
    inbound: Receiver<(NodeId, RaftMessage)>,
) {
    let ticker = crossbeam_channel::tick(node.cfg.tick_interval);
    let events = node.events();
    let started = node.shared.started;
    let result = loop {
        let first = crossbeam_channel::select! {
            recv(ticker) -> _ => Input::Tick,
            recv(inbound) -> m => match m {
                Ok((from, msg)) => Input::Message(from, msg),
                Err(_) => break Ok(()),
            },
            recv(requests) -> r => match r {
                Ok(r) => Input::Request(r),
                Err(_) => break Ok(()),
            },
            recv(events) -> e => match e {
                Ok(e) => Input::Event(e),
                Err(_) => continue,
            },
        };
        let mut inputs = vec![first];
        inputs.extend(
            inbound
                .try_iter()
                .take(BATCH)
                .map(|(f, m)| Input::Message(f, m)),
        );
        inputs.extend(requests.try_iter().take(BATCH).map(Input::Request));
        let now: Duration = started.elapsed();
        if let Err(e) = node.step_all(now, inputs) {
            break Err(e);
        }
        if node.is_shutting_down() {
            break Ok(());
        }
    };
    node.finish(result);
}
