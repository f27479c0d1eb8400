//! The on-chain epilogue: the payer's backup publishes a stale state, the LSP answers it
//! (outbid once in a fee market) and settles its latest state.

use super::*;

impl Demo {
    /// The on-chain epilogue: A, restored from its backup, publishes state 0; S, online,
    /// overrides it with its latest state; that state's settlement confirms after the delay.
    pub(super) fn epilogue(
        &mut self,
        backup: &Backup,
        channel_id: &str,
        to_a: u64,
        to_s: u64,
    ) -> Result<Enforcement, DemoError> {
        self.begin(
            "stale",
            "A restores the backup it took when it went offline and publishes the stale state 0",
        );
        let away = self.args.lsp_restarts_after_cheat;
        if away {
            self.stop_node(Party::S)?;
        }
        let stale = self.publish_stale(backup, channel_id)?;
        if away {
            // Two more blocks pass with S away, well inside the shared delay.
            self.chain.mine(2)?;
            self.chain.wait_for_electrs_tip()?;
            self.start_node(Party::S)?;
            self.narrator.detail(
                "S was offline while U_0 confirmed; it restarts and watches its channels again \
                 from its store",
            );
        }
        self.override_and_settle(&stale, backup, channel_id, to_a, to_s)
    }

    /// A's backup publishes its state (0) with a CPFP child through `submitpackage`, and it
    /// confirms.
    pub(super) fn publish_stale(
        &mut self,
        backup: &Backup,
        channel_id: &str,
    ) -> Result<Stale, DemoError> {
        let height = u32::try_from(self.chain.height()?)?;
        let stale = backup.force_close(channel_id, height)?;
        let stale_txid = stale.compute_txid();
        let stale_state = stale.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE;
        let child = self.fee_child(&stale)?;
        let answer = self.chain.submit_package(&[stale.clone(), child])?;
        if answer["package_msg"] != "success" {
            return Err(DemoError::PackageRefused(answer));
        }
        self.chain_event(
            Party::A,
            format!("U_{stale_state} (stale, restored from backup)"),
        );
        let at = self.chain.confirm(&stale_txid)?;
        self.chain.wait_for_electrs_tip()?;
        self.narrator.detail(format!(
            "U_{stale_state} {stale_txid} (nLockTime TL({stale_state})) with a CPFP child \
             through submitpackage; confirmed at height {at}"
        ));
        self.txids.push(TxRecord {
            what: format!("A's stale update U_{stale_state}"),
            txid: stale_txid.to_string(),
            confirmed_at: Some(at),
        });
        Ok(Stale {
            txid: stale_txid,
            state: stale_state,
        })
    }

    /// S's node answers the stale update with its latest state and settles that state
    /// after the shared delay; the settlement confirms.
    pub(super) fn override_and_settle(
        &mut self,
        stale: &Stale,
        backup: &Backup,
        channel_id: &str,
        to_a: u64,
        to_s: u64,
    ) -> Result<Enforcement, DemoError> {
        let wait = Duration::from_secs(self.args.timeout_secs);
        let (stale_txid, stale_state) = (stale.txid, stale.state);

        let latest = self.latest_state();
        let published_at_sale = self.args.payer_cheats_while_pending;
        self.begin(
            "override",
            if published_at_sale {
                format!(
                    "U_{latest}, which S published over U_0 when it bought the scalar, confirms"
                )
            } else {
                format!("S sees the stale state and overrides it with U_{latest}")
            },
        );
        let over = wait_for("S's update spending the stale one", wait, || {
            spender(&self.chain, stale_txid)
        })?;
        let over_txid = over.compute_txid();
        let override_state = over.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE;
        if !published_at_sale {
            self.chain_event(
                Party::S,
                format!("U_{override_state} spends U_{stale_state}"),
            );
        }
        // A fee market: miners pass over S's first package, its child's feerate being below
        // what blocks take (simulated by `prioritisetransaction` on the child). S publishes
        // the update again at the next block with a child at a higher feerate, which replaces
        // the first one and is mined.
        let (first_child, first_rate) =
            wait_for("S's CPFP child", wait, || anchor_child(&self.chain, &over))?;
        self.chain.rpc::<bool>(
            "prioritisetransaction",
            &[json!(first_child.to_string()), json!(0), json!(-10_000_000)],
        )?;
        self.mine(1)?;
        if !self.chain.in_mempool(&over_txid)? {
            return Err(DemoError::MinedPassedOver(override_state));
        }
        let (_, second_rate) = wait_for("S to publish its update again, higher", wait, || {
            Ok(anchor_child(&self.chain, &over)?.filter(|(txid, _)| *txid != first_child))
        })?;
        self.narrator.detail(format!(
            "miners passed over S's package at {first_rate:.1} sat/vB for a block; S published \
             it again with a child at {second_rate:.1} sat/vB, which replaced the first"
        ));
        let at = u32::try_from(self.chain.confirm(&over_txid)?)?;
        self.chain.wait_for_electrs_tip()?;
        self.narrator.detail(format!(
            "U_{override_state} {over_txid} spends U_{stale_state}'s output; confirmed at height {at}"
        ));
        self.txids.push(TxRecord {
            what: format!("S's override U_{override_state}"),
            txid: over_txid.to_string(),
            confirmed_at: Some(u64::from(at)),
        });

        self.begin(
            "settle",
            format!("after the shared delay S publishes the settlement of state {latest}"),
        );
        // SE_n may confirm `shared_delay` blocks after U_n (BIP68); S publishes it as soon as
        // the next block can carry it.
        let delay = u64::from(backup.shared_delay(channel_id)?);
        let blocks = (u64::from(at) + delay - 1).saturating_sub(self.chain.height()?);
        self.mine(blocks)?;
        let mut mined = u32::try_from(blocks)?;
        self.narrator.detail(format!(
            "mined {blocks} blocks: the next block is {delay} after U_{override_state}'s"
        ));
        // S looks at its settlement when a block arrives; if it learnt of U_n's confirmation
        // only after the block that made SE_n final, it publishes on the next block.
        let settlement = loop {
            let quick = Duration::from_secs(3);
            match wait_for("S's settlement", quick, || spender(&self.chain, over_txid)) {
                Ok(tx) => break tx,
                Err(_) if u64::from(mined) < delay * 3 => {
                    self.mine(1)?;
                    mined += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if u64::from(mined) > blocks {
            self.narrator.detail(format!(
                "S published after {} more block(s)",
                u64::from(mined) - blocks
            ));
        }
        let settle_txid = settlement.compute_txid();
        self.chain_event(Party::S, format!("SE_{override_state} (settlement)"));
        let at = self.chain.confirm(&settle_txid)?;
        let payout = |party: Party| -> Result<u64, DemoError> {
            let key = backup.payout_script(channel_id, party)?;
            Ok(settlement
                .output
                .iter()
                .filter(|o| o.script_pubkey == key)
                .map(|o| o.value.to_sat())
                .sum())
        };
        let settled_to_a = payout(Party::A)?;
        let settled_to_s = payout(Party::S)?;
        self.narrator.detail(format!(
            "SE_{override_state} {settle_txid} confirmed at height {at}: \
             A {settled_to_a} sat, S {settled_to_s} sat (state {override_state}: A {to_a}, S {to_s})"
        ));
        self.txids.push(TxRecord {
            what: format!("S's settlement SE_{override_state}"),
            txid: settle_txid.to_string(),
            confirmed_at: Some(at),
        });
        Ok(Enforcement {
            bumped_sat_vb: [first_rate, second_rate],
            stale_state,
            stale_txid: stale_txid.to_string(),
            override_state,
            override_txid: over_txid.to_string(),
            settlement_txid: settle_txid.to_string(),
            blocks_to_settlement: mined,
            shared_delay: delay,
            settled_to_a,
            settled_to_s,
        })
    }

    /// Records that `party` put a transaction on chain, for the diagram.
    pub(super) fn chain_event(&self, party: Party, what: String) {
        self.events.push(
            self.narrator.started.elapsed(),
            party,
            0,
            Reported::OnChain(what),
        );
    }

    /// A CPFP child for `parent`'s anchor, paid from a fresh faucet coin of the demo's.
    pub(super) fn fee_child(
        &mut self,
        parent: &bitcoin::Transaction,
    ) -> Result<bitcoin::Transaction, DemoError> {
        use bitcoin::hashes::Hash;
        use bitcoin::key::{Keypair, TapTweak};
        use bitcoin::secp256k1::{Message, Secp256k1};
        use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};

        let secp = Secp256k1::new();
        let keypair = Keypair::new(&secp, &mut rand::thread_rng());
        let (xonly, _) = keypair.x_only_public_key();
        let script = bitcoin::ScriptBuf::new_p2tr(&secp, xonly, None);
        let (coin, coin_out) = self.chain.fund(&script, Amount::from_sat(100_000))?;
        self.chain.confirm(&coin.txid)?;
        let (_, anchor_out) = find_anchor(parent)?;
        let fee = package_fee(parent, CHILD_VBYTES, 5);
        let mut child = cpfp_child(parent, coin, &coin_out, script, fee)?;
        let sighash = SighashCache::new(&child).taproot_key_spend_signature_hash(
            1,
            &Prevouts::All(&[anchor_out, coin_out]),
            TapSighashType::Default,
        )?;
        let tweaked = keypair.tap_tweak(&secp, None);
        let sig = secp.sign_schnorr(
            &Message::from_digest(sighash.to_byte_array()),
            &tweaked.to_keypair(),
        );
        child.input[1].witness.push(sig.as_ref());
        Ok(child)
    }
}

/// The letter of payment `payment_id` as A stored it (signature included), read from the
/// `node.db` in A's data directory `dir`.
pub(super) fn stored_letter(dir: &std::path::Path, payment_id: &str) -> Result<Value, DemoError> {
    let store = crate::node::store::Store::open(&dir.join("node.db"))?;
    let records: Vec<(crate::protocol::payment::PaymentId, Value)> = store.payments()?;
    records
        .into_iter()
        .find(|(id, _)| id.to_string() == payment_id)
        .map(|(_, record)| record["status"]["letter"].clone())
        .filter(|letter| !letter.is_null())
        .ok_or_else(|| {
            DemoError::Answer(format!(
                "A's store holds no letter for payment {payment_id}"
            ))
        })
}

/// A channel transaction in the mempool that spends an output of `parent`: a version-3
/// transaction with a state number as nLockTime (an update) or a settlement.
pub(super) fn spender(
    chain: &Regtest,
    parent: Txid,
) -> Result<Option<bitcoin::Transaction>, DemoError> {
    let pool: Vec<Txid> = chain.rpc("getrawmempool", &[])?;
    for txid in pool {
        let tx = chain.transaction(&txid)?;
        let spends_parent = tx.input.iter().any(|i| i.previous_output.txid == parent);
        let is_anchor_child = tx
            .input
            .iter()
            .any(|i| i.witness.is_empty() && i.previous_output.txid == parent);
        if spends_parent && !is_anchor_child && tx.version.0 == 3 {
            return Ok(Some(tx));
        }
    }
    Ok(None)
}

/// The mempool child spending `parent`'s anchor, and the package feerate it gives (sat/vB).
pub(super) fn anchor_child(
    chain: &Regtest,
    parent: &bitcoin::Transaction,
) -> Result<Option<(Txid, f64)>, DemoError> {
    let Some(vout) = parent
        .output
        .iter()
        .position(|o| o.script_pubkey == bitcoin::ScriptBuf::new_p2a())
    else {
        return Err(DemoError::NoAnchor(parent.compute_txid()));
    };
    let txid = parent.compute_txid();
    let spending: Value = chain.rpc(
        "gettxspendingprevout",
        &[json!([{"txid": txid.to_string(), "vout": vout}])],
    )?;
    let Some(child) = spending[0]["spendingtxid"].as_str() else {
        return Ok(None);
    };
    let entry: Value = chain.rpc("getmempoolentry", &[json!(child)])?;
    let fee_btc = entry["fees"]["base"].as_f64().unwrap_or(0.0);
    let vsize = entry["vsize"].as_f64().unwrap_or(0.0) + parent.vsize() as f64;
    Ok(Some((
        child.parse()?,
        (fee_btc * 1e8 / vsize * 10.0).round() / 10.0,
    )))
}

impl Backup {
    /// Reads a stopped node's seed and channels.
    pub(super) fn take(dir: &Path) -> Result<Self, DemoError> {
        let text = std::fs::read_to_string(dir.join("seed")).map_err(DemoError::Seed)?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(DemoError::SeedHex)?;
        let channels = Store::open(&dir.join("node.db"))?.channels()?;
        Ok(Self { seed, channels })
    }

    pub(super) fn snapshot(&self, channel_id: &str) -> Result<&Snapshot, DemoError> {
        self.channels
            .iter()
            .map(|(_, s)| s)
            .find(|s| hex::encode(s.channel_id.0) == channel_id)
            .ok_or_else(|| DemoError::BackupChannel(channel_id.to_string()))
    }

    /// The channel's shared delay (blocks from an update confirming to its settlement).
    pub(super) fn shared_delay(&self, channel_id: &str) -> Result<u16, DemoError> {
        self.snapshot(channel_id)?
            .params
            .as_ref()
            .map(|p| p.shared_delay)
            .ok_or(DemoError::BackupParams)
    }

    /// The latest complete state in the backup.
    pub(super) fn state(&self, channel_id: &str) -> Option<u64> {
        self.snapshot(channel_id)
            .ok()?
            .complete
            .as_ref()
            .map(|c| c.body.number)
    }

    /// The update transaction the backed-up node publishes when told to force-close.
    pub(super) fn force_close(
        &self,
        channel_id: &str,
        height: u32,
    ) -> Result<bitcoin::Transaction, DemoError> {
        let mut core = NodeCore::restore(
            self.seed,
            height,
            self.channels.clone(),
            Records::Payer(Vec::new()),
        )?;
        let id = self.snapshot(channel_id)?.channel_id;
        let outputs = core.handle(NodeInput::Command(NodeCommand::ForceClose {
            channel_id: id,
        }))?;
        outputs
            .actions
            .into_iter()
            .find_map(|o| match o {
                NodeOutput::Broadcast(tx) => Some(tx),
                _ => None,
            })
            .ok_or(DemoError::NothingPublished)
    }

    /// The settlement output script of `party` in the channel.
    pub(super) fn payout_script(
        &self,
        channel_id: &str,
        party: Party,
    ) -> Result<bitcoin::ScriptBuf, DemoError> {
        let snapshot = self.snapshot(channel_id)?;
        let params = snapshot.params.as_ref().ok_or(DemoError::BackupParams)?;
        let key = match party {
            Party::A => params.payout_a,
            Party::S => params.payout_s,
            Party::B | Party::P | Party::C | Party::D | Party::E => {
                return Err(DemoError::NoOutput(party.name()))
            }
        };
        Ok(bitcoin::ScriptBuf::new_p2tr(
            &bitcoin::secp256k1::Secp256k1::verification_only(),
            bitcoin::XOnlyPublicKey::from(key),
            None,
        ))
    }
}
