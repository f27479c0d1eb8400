//! Per-payment accounting of locked capital, in sat·blocks, for pay-for-signature and two
//! held-HTLC baselines.
//!
//! The topology is A — S — H — B: payer A, its LSP S, the payee's hop H (B's LSP or the last
//! router) and payee B. A sends at time 0 and goes offline at once; B comes back after
//! `payee_offline` blocks, A after `payer_offline` blocks. Capital is *locked* while it sits
//! in a contract whose outcome is still open (a pending state, an HTLC or a PTLC) and its
//! owner cannot use it for anything else. Its owner is the party whose balance it leaves.
//!
//! | scheme | payer A | LSP S | hop H |
//! |---|---|---|---|
//! | pay-for-signature | amount, send → sale (B online + resolution) | amount, B online → PTLC resolved | amount, same |
//! | held at payer's LSP (LightningRod, bolts#1149) | amount, send → B claims | amount, release → resolved | amount, same |
//! | held at payee's hop | amount, send → B claims | amount, send → B claims | amount, release → resolved |
//!
//! If B does not come back in time (after the offer's expiry for pay-for-signature, after
//! the hold limit for the baselines) the payment fails and whatever was locked stays locked
//! until that deadline.
//!
//! ```
//! use asyncpay::sim::{account, ModelParams};
//!
//! // 1,000 sat; a 60 s resolution is 0.1 block.
//! let params = ModelParams { amount_sat: 1_000, resolve_secs: 60.0, ..ModelParams::default() };
//! let paid = account(&params, 10.0, 3.0).unwrap();
//! let near = |a: f64, b: f64| (a - b).abs() < 1e-6;
//! // The payer's amount is locked for the whole offline period in both schemes...
//! assert!(near(paid.pay_for_signature.payer, 10_100.0));
//! assert!(near(paid.held_at_payer_lsp.payer, 10_100.0));
//! // ...the LSP's only for the resolution, unless the HTLC waits at the payee's hop.
//! assert!(near(paid.pay_for_signature.lsp, 100.0));
//! assert!(near(paid.held_at_payee_hop.lsp, 10_100.0));
//! ```

use serde::Serialize;

use super::SimError;

/// The model's parameters. [`ModelParams::default`] holds the values `docs/capital.md`
/// justifies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelParams {
    /// The payment amount; every sat·block figure is linear in it.
    pub amount_sat: u64,
    /// Seconds per block.
    pub block_secs: f64,
    /// Seconds from B coming online to the PTLC (or released HTLC) being resolved along the
    /// whole path: the window in which S's and H's capital is committed in the online case.
    pub resolve_secs: f64,
    /// Blocks after sending by which B must be back: the offer's expiry (pay-for-signature)
    /// and the expiry the payer gives its held HTLC (baselines).
    pub horizon_blocks: u32,
    /// CLTV the released HTLC still needs when it leaves the holding node: the hops'
    /// `cltv_expiry_delta`s plus the payee's final delta. A baseline payment succeeds only
    /// if B returns within `horizon_blocks - route_cltv_budget`.
    pub route_cltv_budget: u32,
    /// Blocks before an incoming HTLC's expiry at which a node that knows the preimage
    /// force-closes to claim it on chain.
    pub claim_margin_blocks: u32,
    /// The eltoo channel's shared delay; a PTLC that pays for A's signature must expire at
    /// least 2·shared_delay blocks after it is offered.
    pub shared_delay: u32,
    /// CLTV limits to report against: `(name, blocks)`.
    pub cltv_limits: Vec<(String, u32)>,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            amount_sat: 100_000,
            block_secs: 600.0,
            resolve_secs: 10.0,
            horizon_blocks: 2016,
            // LDK's default cltv_expiry_delta (72) at S and at H, plus LDK's
            // MIN_FINAL_CLTV_EXPIRY_DELTA (42) at B.
            route_cltv_budget: 72 + 72 + 42,
            // lnd's DefaultIncomingBroadcastDelta.
            claim_margin_blocks: 10,
            shared_delay: 144,
            cltv_limits: vec![
                ("lnd/cln max 2016".to_string(), 2016),
                ("ldk path max 1008".to_string(), 1008),
            ],
        }
    }
}

impl ModelParams {
    /// Checks that the parameters describe a model that can be run.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.amount_sat == 0 {
            return Err(SimError::ZeroAmount);
        }
        for (name, value) in [
            ("block_secs", self.block_secs),
            ("resolve_secs", self.resolve_secs),
        ] {
            if !value.is_finite() || value < 0.0 || (name == "block_secs" && value == 0.0) {
                return Err(SimError::BadParameter { name, value });
            }
        }
        if self.route_cltv_budget >= self.horizon_blocks {
            return Err(SimError::HorizonTooShort {
                horizon: self.horizon_blocks,
                budget: self.route_cltv_budget,
            });
        }
        Ok(())
    }

    /// Blocks after sending within which B must sell a held sale: the PTLC A offers S
    /// expires at `horizon_blocks`, S must claim it on chain from `shared_delay + 3` blocks
    /// before that, and the PTLC S offers B (at least `2 · shared_delay` blocks) must let S
    /// learn the scalar by then, which a payee claiming late on chain may delay by the
    /// 2-block sale-window margin (docs/payment.md, "Held sales").
    pub fn held_window_blocks(&self) -> u32 {
        self.horizon_blocks
            .saturating_sub(3 * self.shared_delay + 5)
    }

    /// The resolution window in blocks.
    pub fn resolve_blocks(&self) -> f64 {
        self.resolve_secs / self.block_secs
    }

    /// Blocks after sending within which B must return for a baseline payment to go through.
    pub fn hold_limit_blocks(&self) -> u32 {
        self.horizon_blocks - self.route_cltv_budget
    }
}

/// A payment scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Our protocol: A pre-signs state n+1, B sells the signature to S for a PTLC.
    PayForSignature,
    /// A's HTLC held at A's LSP until B is online (LightningRod, bolts#1149).
    HeldAtPayerLsp,
    /// A's HTLC forwarded at once and held at the payee's hop until B is online.
    HeldAtPayeeHop,
    /// Ours with many pending payments per channel: A's PTLC to S in a complete state, B
    /// sells the scalar that claims it (docs/payment.md, "Held sales").
    HeldSale,
}

impl Scheme {
    /// Every scheme, ours first.
    pub const ALL: [Scheme; 4] = [
        Scheme::PayForSignature,
        Scheme::HeldAtPayerLsp,
        Scheme::HeldAtPayeeHop,
        Scheme::HeldSale,
    ];

    /// The name the bench prints.
    pub fn label(self) -> &'static str {
        match self {
            Scheme::PayForSignature => "pay-for-signature",
            Scheme::HeldAtPayerLsp => "held at payer's LSP",
            Scheme::HeldAtPayeeHop => "held at payee's hop",
            Scheme::HeldSale => "held sale (ours)",
        }
    }
}

/// Whose capital.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// A, the payer.
    Payer,
    /// S, the payer's LSP.
    Lsp,
    /// H, the node that forwards to the payee.
    Hop,
}

impl Party {
    /// Every party, in path order.
    pub const ALL: [Party; 3] = [Party::Payer, Party::Lsp, Party::Hop];

    /// The name the bench prints.
    pub fn label(self) -> &'static str {
        match self {
            Party::Payer => "payer",
            Party::Lsp => "LSP",
            Party::Hop => "payee's hop",
        }
    }
}

/// Capital locked by one payment, in sat·blocks, per party.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Locked {
    /// The payer's.
    pub payer: f64,
    /// The payer's LSP's.
    pub lsp: f64,
    /// The payee's hop's.
    pub hop: f64,
}

impl Locked {
    /// One party's share.
    pub fn of(&self, party: Party) -> f64 {
        match party {
            Party::Payer => self.payer,
            Party::Lsp => self.lsp,
            Party::Hop => self.hop,
        }
    }

    /// All parties together.
    pub fn total(&self) -> f64 {
        self.payer + self.lsp + self.hop
    }
}

/// One payment under every scheme.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentAccount {
    /// Locked capital under pay-for-signature.
    pub pay_for_signature: Locked,
    /// Locked capital with the HTLC held at the payer's LSP.
    pub held_at_payer_lsp: Locked,
    /// Locked capital with the HTLC held at the payee's hop.
    pub held_at_payee_hop: Locked,
    /// Locked capital as a held sale.
    pub held_sale: Locked,
    /// Held sale: B came back within the held window and sold.
    pub held_sold: bool,
    /// Pay-for-signature: B came back before the offer expired and the signature was sold.
    pub sold: bool,
    /// Baselines: B came back within the hold limit and the HTLC went through.
    pub forwarded: bool,
    /// Blocks of CLTV a held HTLC needs to cover this payee's offline time and the route.
    pub cltv_needed_blocks: f64,
    /// Baselines: B was paid, but A came back only after its HTLC's expiry minus the claim
    /// margin, so its LSP had to force-close A's channel to claim the HTLC on chain.
    pub payer_missed_htlc_deadline: bool,
    /// Pay-for-signature: blocks A spent online while its sale was still pending. The
    /// channel takes no other update in that time unless A cancels the sale.
    pub payer_blocked_blocks: f64,
    /// Baselines: blocks between B claiming and A returning, in which the claimed HTLC still
    /// sits in A's channel. Not counted as locked: S's credit under pay-for-signature is just
    /// as unusable until A returns (both can only be spent in A's channel).
    pub claimed_awaiting_payer_blocks: f64,
}

impl PaymentAccount {
    /// The locked capital under `scheme`.
    pub fn locked(&self, scheme: Scheme) -> &Locked {
        match scheme {
            Scheme::PayForSignature => &self.pay_for_signature,
            Scheme::HeldAtPayerLsp => &self.held_at_payer_lsp,
            Scheme::HeldAtPayeeHop => &self.held_at_payee_hop,
            Scheme::HeldSale => &self.held_sale,
        }
    }
}

/// Accounts one payment whose payee is offline for `payee_offline` blocks and whose payer is
/// offline for `payer_offline` blocks after sending.
pub fn account(
    params: &ModelParams,
    payee_offline: f64,
    payer_offline: f64,
) -> Result<PaymentAccount, SimError> {
    params.validate()?;
    for (name, value) in [
        ("payee_offline", payee_offline),
        ("payer_offline", payer_offline),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(SimError::BadParameter { name, value });
        }
    }
    // Amounts stay far below 2^53 sat, so the conversion is exact.
    let amount = params.amount_sat as f64;
    let r = params.resolve_blocks();
    let horizon = f64::from(params.horizon_blocks);
    let hold_limit = f64::from(params.hold_limit_blocks());

    // Pay-for-signature. A's amount is committed in the pre-signed state n+1 from sending
    // until S completes that state (the sale, B online + resolution) or, if B never comes
    // in time, until the offer expires. S's and H's capital enters only with the PTLC, after
    // B is online. No HTLC is pending while B is away, so nothing caps the offer's expiry but
    // the horizon the payer and S agree on.
    let sold = payee_offline <= horizon;
    let (pay_for_signature, sale_done) = if sold {
        let done = payee_offline + r;
        (
            Locked {
                payer: amount * done,
                lsp: amount * r,
                hop: amount * r,
            },
            done,
        )
    } else {
        (
            Locked {
                payer: amount * horizon,
                lsp: 0.0,
                hop: 0.0,
            },
            horizon,
        )
    };
    let payer_blocked_blocks = (sale_done - payer_offline).max(0.0);

    // Held HTLCs. The payer gives its HTLC an expiry `horizon` blocks out; once the holding
    // node releases it, the rest of the route still needs `route_cltv_budget` blocks.
    let forwarded = payee_offline <= hold_limit;
    let (held_at_payer_lsp, held_at_payee_hop) = if forwarded {
        let claimed = payee_offline + r;
        (
            Locked {
                payer: amount * claimed,
                lsp: amount * r,
                hop: amount * r,
            },
            Locked {
                payer: amount * claimed,
                lsp: amount * claimed,
                hop: amount * r,
            },
        )
    } else {
        // The holding node gives up at the hold limit and fails the HTLC back.
        (
            Locked {
                payer: amount * hold_limit,
                lsp: 0.0,
                hop: 0.0,
            },
            Locked {
                payer: amount * hold_limit,
                lsp: amount * hold_limit,
                hop: 0.0,
            },
        )
    };
    // Held sale. A's amount is in its PTLC to S from sending until S claims it (B online +
    // resolution) or, if B does not sell within the held window, until S's offer ends there
    // and S fails it back. S's and H's capital enters only with the PTLC to B. The channel
    // takes other updates meanwhile: nothing is blocked.
    let window = f64::from(params.held_window_blocks());
    let held_sold = payee_offline <= window;
    let held_sale = if held_sold {
        Locked {
            payer: amount * (payee_offline + r),
            lsp: amount * r,
            hop: amount * r,
        }
    } else {
        Locked {
            payer: amount * window,
            lsp: 0.0,
            hop: 0.0,
        }
    };
    let payer_deadline = horizon - f64::from(params.claim_margin_blocks);
    let payer_missed_htlc_deadline = forwarded && payer_offline > payer_deadline;
    let claimed_awaiting_payer_blocks = if forwarded {
        (payer_offline - (payee_offline + r)).max(0.0)
    } else {
        0.0
    };

    Ok(PaymentAccount {
        pay_for_signature,
        held_at_payer_lsp,
        held_at_payee_hop,
        held_sale,
        held_sold,
        sold,
        forwarded,
        cltv_needed_blocks: payee_offline + f64::from(params.route_cltv_budget),
        payer_missed_htlc_deadline,
        payer_blocked_blocks,
        claimed_awaiting_payer_blocks,
    })
}
