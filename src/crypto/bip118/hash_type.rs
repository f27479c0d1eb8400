//! Hash types for BIP118 public keys and the key version they are used with.

use core::fmt;

use bitcoin::TapSighashType;

/// `SIGHASH_ANYPREVOUT`: bit 6 of the hash type.
pub const SIGHASH_ANYPREVOUT: u8 = 0x40;
/// `SIGHASH_ANYPREVOUTANYSCRIPT`: bits 6 and 7 of the hash type.
pub const SIGHASH_ANYPREVOUTANYSCRIPT: u8 = 0xc0;
/// `SIGHASH_ANYONECANPAY`: bit 7 of the hash type.
pub const SIGHASH_ANYONECANPAY: u8 = 0x80;

/// The key version committed to in the tapscript signature message extension.
///
/// BIP342 keys (32-byte x-only keys) use version 0x00; BIP118 keys (`0x01 || x`, or the
/// single byte `0x01` for the internal key) use version 0x01, so that a signature made for
/// one kind of key is never valid for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyVersion {
    /// 0x00: a plain BIP342 tapscript key.
    Bip342,
    /// 0x01: a BIP118 (ANYPREVOUT) key.
    Bip118,
}

impl KeyVersion {
    /// The byte committed to in the signature message.
    pub const fn to_u8(self) -> u8 {
        match self {
            KeyVersion::Bip342 => 0x00,
            KeyVersion::Bip118 => 0x01,
        }
    }

    /// Parses a key version byte; only 0x00 and 0x01 are defined.
    pub const fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0x00 => Some(KeyVersion::Bip342),
            0x01 => Some(KeyVersion::Bip118),
            _ => None,
        }
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.to_u8())
    }
}

/// Which inputs a signature commits to (bits 6 and 7 of the hash type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputCommitment {
    /// All inputs: outpoints, amounts, scriptPubKeys and sequences of every input.
    AllInputs,
    /// `SIGHASH_ANYONECANPAY`: this input's outpoint, amount, scriptPubKey and sequence.
    AnyoneCanPay,
    /// `SIGHASH_ANYPREVOUT`: this input's amount, scriptPubKey, sequence and tapleaf, not
    /// its outpoint.
    AnyPrevout,
    /// `SIGHASH_ANYPREVOUTANYSCRIPT`: only this input's sequence; neither its outpoint,
    /// amount, scriptPubKey nor tapleaf.
    AnyPrevoutAnyScript,
}

/// Which outputs a signature commits to (the two low bits of the hash type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputCommitment {
    /// All outputs (`SIGHASH_ALL`, and the default hash type 0x00).
    All,
    /// No outputs (`SIGHASH_NONE`).
    None,
    /// The output at the same index as the input (`SIGHASH_SINGLE`).
    Single,
}

/// A hash type valid for a BIP118 public key (key version 0x01).
///
/// This is the BIP341 set extended with `SIGHASH_ANYPREVOUT` (0x41-0x43) and
/// `SIGHASH_ANYPREVOUTANYSCRIPT` (0xc1-0xc3). A signature with [`ApoSighashType::Default`]
/// is serialised as 64 bytes, every other hash type as 65 bytes with the hash type last.
///
/// Serialised with serde as its byte.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub enum ApoSighashType {
    /// 0x00: commits to everything, like `All`, with a 64-byte signature.
    Default,
    /// 0x01: all inputs, all outputs.
    All,
    /// 0x02: all inputs, no outputs.
    None,
    /// 0x03: all inputs, the output at this input's index.
    Single,
    /// 0x81: this input only, all outputs.
    AllPlusAnyoneCanPay,
    /// 0x82: this input only, no outputs.
    NonePlusAnyoneCanPay,
    /// 0x83: this input only, the output at this input's index.
    SinglePlusAnyoneCanPay,
    /// 0x41: this input without its outpoint, all outputs.
    AllPlusAnyPrevout,
    /// 0x42: this input without its outpoint, no outputs.
    NonePlusAnyPrevout,
    /// 0x43: this input without its outpoint, the output at this input's index.
    SinglePlusAnyPrevout,
    /// 0xc1: this input's sequence only, all outputs. The eltoo update hash type.
    AllPlusAnyPrevoutAnyScript,
    /// 0xc2: this input's sequence only, no outputs.
    NonePlusAnyPrevoutAnyScript,
    /// 0xc3: this input's sequence only, the output at this input's index.
    SinglePlusAnyPrevoutAnyScript,
}

/// A byte that is not a hash type valid for BIP118 public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("invalid hash type {hash_type:#04x}")]
pub struct InvalidHashTypeError {
    /// The rejected byte.
    pub hash_type: u8,
}

impl ApoSighashType {
    /// Every valid hash type, in byte order of the input commitment groups
    /// (0x00-0x03, 0x41-0x43, 0x81-0x83, 0xc1-0xc3).
    pub const ALL: [ApoSighashType; 13] = [
        ApoSighashType::Default,
        ApoSighashType::All,
        ApoSighashType::None,
        ApoSighashType::Single,
        ApoSighashType::AllPlusAnyPrevout,
        ApoSighashType::NonePlusAnyPrevout,
        ApoSighashType::SinglePlusAnyPrevout,
        ApoSighashType::AllPlusAnyoneCanPay,
        ApoSighashType::NonePlusAnyoneCanPay,
        ApoSighashType::SinglePlusAnyoneCanPay,
        ApoSighashType::AllPlusAnyPrevoutAnyScript,
        ApoSighashType::NonePlusAnyPrevoutAnyScript,
        ApoSighashType::SinglePlusAnyPrevoutAnyScript,
    ];

    /// Parses a hash type byte.
    ///
    /// The input bits (`hash_type & 0xc0`) are decoded first; the output bits must then be
    /// 1, 2 or 3, or also 0 when no input bit is set. So 0x40, 0x80 and 0xc0 on their own,
    /// and any byte with bits 2-5 set, are rejected.
    pub const fn from_u8(hash_type: u8) -> Result<Self, InvalidHashTypeError> {
        use ApoSighashType::*;
        let low = hash_type & !SIGHASH_ANYPREVOUTANYSCRIPT;
        let parsed = match hash_type & SIGHASH_ANYPREVOUTANYSCRIPT {
            0x00 => match low {
                0x00 => Some(Default),
                0x01 => Some(All),
                0x02 => Some(None),
                0x03 => Some(Single),
                _ => Option::None,
            },
            SIGHASH_ANYONECANPAY => match low {
                0x01 => Some(AllPlusAnyoneCanPay),
                0x02 => Some(NonePlusAnyoneCanPay),
                0x03 => Some(SinglePlusAnyoneCanPay),
                _ => Option::None,
            },
            SIGHASH_ANYPREVOUT => match low {
                0x01 => Some(AllPlusAnyPrevout),
                0x02 => Some(NonePlusAnyPrevout),
                0x03 => Some(SinglePlusAnyPrevout),
                _ => Option::None,
            },
            _ => match low {
                0x01 => Some(AllPlusAnyPrevoutAnyScript),
                0x02 => Some(NonePlusAnyPrevoutAnyScript),
                0x03 => Some(SinglePlusAnyPrevoutAnyScript),
                _ => Option::None,
            },
        };
        match parsed {
            Some(t) => Ok(t),
            Option::None => Err(InvalidHashTypeError { hash_type }),
        }
    }

    /// The hash type byte.
    pub const fn to_u8(self) -> u8 {
        use ApoSighashType::*;
        match self {
            Default => 0x00,
            All => 0x01,
            None => 0x02,
            Single => 0x03,
            AllPlusAnyoneCanPay => 0x81,
            NonePlusAnyoneCanPay => 0x82,
            SinglePlusAnyoneCanPay => 0x83,
            AllPlusAnyPrevout => 0x41,
            NonePlusAnyPrevout => 0x42,
            SinglePlusAnyPrevout => 0x43,
            AllPlusAnyPrevoutAnyScript => 0xc1,
            NonePlusAnyPrevoutAnyScript => 0xc2,
            SinglePlusAnyPrevoutAnyScript => 0xc3,
        }
    }

    /// Combines an input and an output commitment into a hash type.
    ///
    /// `(AllInputs, All)` gives [`ApoSighashType::All`] (0x01), never `Default`.
    pub const fn from_parts(inputs: InputCommitment, outputs: OutputCommitment) -> Self {
        use ApoSighashType as T;
        use InputCommitment as I;
        use OutputCommitment as O;
        match (inputs, outputs) {
            (I::AllInputs, O::All) => T::All,
            (I::AllInputs, O::None) => T::None,
            (I::AllInputs, O::Single) => T::Single,
            (I::AnyoneCanPay, O::All) => T::AllPlusAnyoneCanPay,
            (I::AnyoneCanPay, O::None) => T::NonePlusAnyoneCanPay,
            (I::AnyoneCanPay, O::Single) => T::SinglePlusAnyoneCanPay,
            (I::AnyPrevout, O::All) => T::AllPlusAnyPrevout,
            (I::AnyPrevout, O::None) => T::NonePlusAnyPrevout,
            (I::AnyPrevout, O::Single) => T::SinglePlusAnyPrevout,
            (I::AnyPrevoutAnyScript, O::All) => T::AllPlusAnyPrevoutAnyScript,
            (I::AnyPrevoutAnyScript, O::None) => T::NonePlusAnyPrevoutAnyScript,
            (I::AnyPrevoutAnyScript, O::Single) => T::SinglePlusAnyPrevoutAnyScript,
        }
    }

    /// Which inputs this hash type commits to.
    pub const fn input_commitment(self) -> InputCommitment {
        match self.to_u8() & SIGHASH_ANYPREVOUTANYSCRIPT {
            0x00 => InputCommitment::AllInputs,
            SIGHASH_ANYONECANPAY => InputCommitment::AnyoneCanPay,
            SIGHASH_ANYPREVOUT => InputCommitment::AnyPrevout,
            _ => InputCommitment::AnyPrevoutAnyScript,
        }
    }

    /// Which outputs this hash type commits to.
    pub const fn output_commitment(self) -> OutputCommitment {
        match self.to_u8() & 0x03 {
            0x02 => OutputCommitment::None,
            0x03 => OutputCommitment::Single,
            _ => OutputCommitment::All,
        }
    }

    /// Whether the ANYPREVOUT bit (0x40) is set, i.e. the outpoint is not signed.
    pub const fn is_anyprevout(self) -> bool {
        self.to_u8() & SIGHASH_ANYPREVOUT != 0
    }

    /// Whether the hash type may be used with a key of the given version: key version 0x00
    /// (BIP342) allows only the BIP341 hash types.
    pub const fn is_valid_for(self, key_version: KeyVersion) -> bool {
        match key_version {
            KeyVersion::Bip118 => true,
            KeyVersion::Bip342 => !self.is_anyprevout(),
        }
    }

    /// Whether the signature message needs the outputs spent by *all* inputs.
    pub const fn needs_all_spent_outputs(self) -> bool {
        matches!(self.input_commitment(), InputCommitment::AllInputs)
    }

    /// Whether the signature message needs the amount and scriptPubKey of the output spent
    /// by the signed input (everything except ANYPREVOUTANYSCRIPT).
    pub const fn needs_this_spent_output(self) -> bool {
        !matches!(
            self.input_commitment(),
            InputCommitment::AnyPrevoutAnyScript
        )
    }

    /// Whether the signature is serialised with an explicit hash type byte (65 bytes).
    pub const fn is_explicit(self) -> bool {
        !matches!(self, ApoSighashType::Default)
    }
}

impl TryFrom<u8> for ApoSighashType {
    type Error = InvalidHashTypeError;

    fn try_from(hash_type: u8) -> Result<Self, Self::Error> {
        Self::from_u8(hash_type)
    }
}

impl From<ApoSighashType> for u8 {
    fn from(hash_type: ApoSighashType) -> u8 {
        hash_type.to_u8()
    }
}

impl From<TapSighashType> for ApoSighashType {
    fn from(t: TapSighashType) -> Self {
        match t {
            TapSighashType::Default => ApoSighashType::Default,
            TapSighashType::All => ApoSighashType::All,
            TapSighashType::None => ApoSighashType::None,
            TapSighashType::Single => ApoSighashType::Single,
            TapSighashType::AllPlusAnyoneCanPay => ApoSighashType::AllPlusAnyoneCanPay,
            TapSighashType::NonePlusAnyoneCanPay => ApoSighashType::NonePlusAnyoneCanPay,
            TapSighashType::SinglePlusAnyoneCanPay => ApoSighashType::SinglePlusAnyoneCanPay,
        }
    }
}

impl TryFrom<ApoSighashType> for TapSighashType {
    type Error = InvalidHashTypeError;

    /// Fails for the ANYPREVOUT hash types, which BIP341 does not define.
    fn try_from(t: ApoSighashType) -> Result<Self, Self::Error> {
        TapSighashType::from_consensus_u8(t.to_u8()).map_err(|_| InvalidHashTypeError {
            hash_type: t.to_u8(),
        })
    }
}

impl fmt::Display for ApoSighashType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ApoSighashType::*;
        let name = match self {
            Default => "SIGHASH_DEFAULT",
            All => "SIGHASH_ALL",
            None => "SIGHASH_NONE",
            Single => "SIGHASH_SINGLE",
            AllPlusAnyoneCanPay => "SIGHASH_ALL|SIGHASH_ANYONECANPAY",
            NonePlusAnyoneCanPay => "SIGHASH_NONE|SIGHASH_ANYONECANPAY",
            SinglePlusAnyoneCanPay => "SIGHASH_SINGLE|SIGHASH_ANYONECANPAY",
            AllPlusAnyPrevout => "SIGHASH_ALL|SIGHASH_ANYPREVOUT",
            NonePlusAnyPrevout => "SIGHASH_NONE|SIGHASH_ANYPREVOUT",
            SinglePlusAnyPrevout => "SIGHASH_SINGLE|SIGHASH_ANYPREVOUT",
            AllPlusAnyPrevoutAnyScript => "SIGHASH_ALL|SIGHASH_ANYPREVOUTANYSCRIPT",
            NonePlusAnyPrevoutAnyScript => "SIGHASH_NONE|SIGHASH_ANYPREVOUTANYSCRIPT",
            SinglePlusAnyPrevoutAnyScript => "SIGHASH_SINGLE|SIGHASH_ANYPREVOUTANYSCRIPT",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let valid: [u8; 13] = [
            0x00, 0x01, 0x02, 0x03, 0x41, 0x42, 0x43, 0x81, 0x82, 0x83, 0xc1, 0xc2, 0xc3,
        ];
        for byte in 0..=u8::MAX {
            let parsed = ApoSighashType::from_u8(byte);
            if valid.contains(&byte) {
                let t = parsed.expect("listed as valid");
                assert_eq!(t.to_u8(), byte);
                assert_eq!(ApoSighashType::try_from(byte), Ok(t));
            } else {
                assert_eq!(parsed, Err(InvalidHashTypeError { hash_type: byte }));
            }
        }
        for byte in [0x40, 0x80, 0xc0, 0x04, 0x44, 0x84, 0xc4, 0xff, 0x21] {
            assert!(ApoSighashType::from_u8(byte).is_err(), "{byte:#04x}");
        }
        let all: Vec<u8> = ApoSighashType::ALL.iter().map(|t| t.to_u8()).collect();
        assert_eq!(all, valid);
    }

    #[test]
    fn parts_round_trip() {
        for t in ApoSighashType::ALL.into_iter().filter(|t| t.is_explicit()) {
            let back = ApoSighashType::from_parts(t.input_commitment(), t.output_commitment());
            assert_eq!(back, t);
        }
        assert_eq!(
            ApoSighashType::Default.output_commitment(),
            OutputCommitment::All
        );
        assert_eq!(
            ApoSighashType::from_u8(0xc1).map(|t| t.input_commitment()),
            Ok(InputCommitment::AnyPrevoutAnyScript)
        );
        assert_eq!(
            ApoSighashType::from_u8(0x42).map(|t| (t.input_commitment(), t.output_commitment())),
            Ok((InputCommitment::AnyPrevout, OutputCommitment::None))
        );
    }

    #[test]
    fn key_version_restricts_hash_types() {
        for t in ApoSighashType::ALL {
            assert!(t.is_valid_for(KeyVersion::Bip118));
            assert_eq!(t.is_valid_for(KeyVersion::Bip342), !t.is_anyprevout());
            match TapSighashType::try_from(t) {
                Ok(tap) => assert_eq!(ApoSighashType::from(tap), t),
                Err(_) => assert!(t.is_anyprevout()),
            }
        }
        assert_eq!(KeyVersion::from_u8(0x02), Option::None);
        assert_eq!(KeyVersion::from_u8(0x01), Some(KeyVersion::Bip118));
    }

    #[test]
    fn serde_as_byte() {
        let json =
            serde_json::to_string(&ApoSighashType::AllPlusAnyPrevoutAnyScript).expect("serialises");
        assert_eq!(json, "193");
        assert_eq!(
            serde_json::from_str::<ApoSighashType>("65").ok(),
            Some(ApoSighashType::AllPlusAnyPrevout)
        );
        assert!(serde_json::from_str::<ApoSighashType>("64").is_err());
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(
            ApoSighashType::AllPlusAnyPrevoutAnyScript.to_string(),
            "SIGHASH_ALL|SIGHASH_ANYPREVOUTANYSCRIPT"
        );
        assert_eq!(
            InvalidHashTypeError { hash_type: 0x40 }.to_string(),
            "invalid hash type 0x40"
        );
    }
}
