//! Waking a recipient: long-polling fetches waiting on a mailbox, and its webhook, called at
//! most once per coalescing window, only at a public https address checked again at call
//! time, each call signed by the server key (see [`super::webhook`]).

use super::*;

pub(super) fn waker(state: &AppState, mailbox: XOnlyPublicKey) -> Arc<Notify> {
    state
        .wakers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(mailbox)
        .or_default()
        .clone()
}

pub(super) fn release_waker(state: &AppState, mailbox: &XOnlyPublicKey, notify: Arc<Notify>) {
    let mut wakers = state.wakers.lock().unwrap_or_else(|e| e.into_inner());
    drop(notify);
    if wakers
        .get(mailbox)
        .is_some_and(|n| Arc::strong_count(n) == 1)
    {
        wakers.remove(mailbox);
    }
}

pub(super) fn wake(state: &Arc<AppState>, mailbox: &XOnlyPublicKey) {
    let notify = state
        .wakers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(mailbox)
        .cloned();
    if let Some(notify) = notify {
        notify.notify_waiters();
    }
    schedule_webhook(state, mailbox);
}

/// Calls the mailbox's webhook now, or once at the end of the minimum interval if a call
/// was made recently (coalescing everything that arrives meanwhile).
pub(super) fn schedule_webhook(state: &Arc<AppState>, mailbox: &XOnlyPublicKey) {
    let interval = state.config.webhook_min_interval.as_millis() as u64;
    let now = state.config.clock.now_ms();
    let delay_ms = {
        let mut hooks = state.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        let Some(hook) = hooks.get_mut(mailbox) else {
            return;
        };
        if hook.pending {
            return;
        }
        match hook.last_call_ms {
            Some(last) if now < last.saturating_add(interval) => {
                hook.pending = true;
                last.saturating_add(interval) - now
            }
            _ => {
                hook.last_call_ms = Some(now);
                0
            }
        }
    };
    let state = state.clone();
    let mailbox = *mailbox;
    tokio::spawn(async move {
        if delay_ms > 0 {
            let mut shutdown = state.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        let url = {
            let mut hooks = state.webhooks.lock().unwrap_or_else(|e| e.into_inner());
            let Some(hook) = hooks.get_mut(&mailbox) else {
                return;
            };
            if delay_ms > 0 {
                hook.pending = false;
                hook.last_call_ms = Some(state.config.clock.now_ms());
            }
            hook.url.clone()
        };
        call_webhook(&state, &mailbox, &url).await;
    });
}

/// Checks the target again (its name may resolve elsewhere since it was registered) and
/// calls it at exactly the addresses just checked, following no redirect.
pub(super) async fn call_webhook(state: &AppState, mailbox: &XOnlyPublicKey, url: &str) {
    let counters = &state.webhook_stats;
    let target = match webhook::check(url, MAX_WEBHOOK_URL, state.config.webhook_policy).await {
        Ok(target) => target,
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(mailbox = %mailbox, error = %e, "webhook target refused at call time");
            return;
        }
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .resolve_to_addrs(&target.host, &target.addrs)
        .build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(mailbox = %mailbox, error = %e, "webhook client");
            return;
        }
    };
    let notification = WebhookNotification {
        event: "mailbox.message".into(),
        mailbox: mailbox.to_string(),
    };
    let body = serde_json::to_vec(&notification).expect("two strings serialise");
    // Signed over the exact bytes sent, so the receiver checks what it received.
    let call = state.server_key.sign_call(state.config.clock.now(), &body);
    let request = client
        .post(target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(webhook::TIMESTAMP_HEADER, call.timestamp_header())
        .header(webhook::SIGNATURE_HEADER, call.signature_header())
        .body(body);
    match request.send().await {
        Ok(r) if r.status().is_success() => {
            counters.delivered.fetch_add(1, Ordering::SeqCst);
            tracing::debug!(mailbox = %mailbox, "webhook delivered")
        }
        Ok(r) => {
            counters.failed.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(mailbox = %mailbox, status = %r.status(), "webhook refused (redirects are not followed)")
        }
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::SeqCst);
            // Push URLs often carry tokens: never logged.
            tracing::warn!(mailbox = %mailbox, error = %e.without_url(), "webhook failed")
        }
    }
}
