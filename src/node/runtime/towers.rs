//! Pushing each channel's latest complete state to the node's watchtowers.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::protocol::channel::Snapshot;
use crate::protocol::messages::ChannelId;
use crate::tower::client::{PushError, TowerClient};

use super::events::{NodeEvent, Reporter};
use super::RuntimeError;

/// The task that sends channels' latest states to the watchtower: the newest snapshot of
/// each channel waits until the tower took it, retried every two seconds. Nothing is stored:
/// after a restart every channel is sent again, and the tower asks for what it lacks.
pub(super) fn spawn_tower_pusher(
    url: &str,
    seed: [u8; 32],
    reporter: Reporter,
) -> Result<mpsc::UnboundedSender<Snapshot>, RuntimeError> {
    let client = TowerClient::new(url)?;
    let url = url.to_owned();
    let (tx, mut rx) = mpsc::unbounded_channel::<Snapshot>();
    tokio::spawn(async move {
        let mut waiting: BTreeMap<ChannelId, Snapshot> = BTreeMap::new();
        loop {
            if waiting.is_empty() {
                match rx.recv().await {
                    Some(s) => {
                        waiting.insert(s.channel_id, s);
                    }
                    None => return,
                }
            }
            while let Ok(s) = rx.try_recv() {
                waiting.insert(s.channel_id, s);
            }
            let ids: Vec<ChannelId> = waiting.keys().copied().collect();
            for id in ids {
                let Some(snapshot) = waiting.get(&id) else {
                    continue;
                };
                let state = snapshot.complete.as_ref().map(|r| r.body.number);
                match client.push(&seed, snapshot).await {
                    Ok(held) => {
                        reporter.report(NodeEvent::WatchtowerUpdated {
                            tower: url.clone(),
                            channel_id: id,
                            state: held,
                        });
                        waiting.remove(&id);
                    }
                    // A state the tower already holds a newer one of, or a channel it no
                    // longer takes appointments for (closing on chain): nothing to retry.
                    Err(PushError::Refused { code, .. })
                        if code == "stale" || code == "closing" =>
                    {
                        waiting.remove(&id);
                    }
                    Err(e) => reporter.report(NodeEvent::WatchtowerFailed {
                        tower: url.clone(),
                        channel_id: id,
                        state,
                        error: e.to_string(),
                    }),
                }
            }
            if !waiting.is_empty() {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
    Ok(tx)
}
