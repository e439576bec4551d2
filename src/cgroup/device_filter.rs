//! Device rules as an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` (cgroup v2 has no
//! devices controller: the kernel runs such programs attached to a cgroup on every open and
//! mknod of a device node by its processes; 1 allows, 0 denies with EPERM).
//!
//! The program is a straight list of tests, one block per rule in order, and a final deny:
//!
//! ```text
//!   r2 = ctx.access_type & 0xffff   device type: 1 block, 2 char
//!   r3 = ctx.access_type >> 16      access asked: 1 mknod, 2 read, 4 write
//!   r4 = ctx.major; r5 = ctx.minor
//!   rule: if r2 != type goto next; if r3 & ~allowed goto next;
//!         if r4 != major goto next; if r5 != minor goto next; return 1
//!   ...
//!   return 0
//! ```
//!
//! Tests a rule does not need (`a`, `*`, `rwm`) are left out; a rule with none left returns
//! 1 unconditionally and ends the program (the verifier refuses unreachable instructions).

use super::devices::{Access, DeviceKind, DeviceRule};

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes (class | operation | source) of the few instructions used.
pub const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
pub const ALU32_AND_K: u8 = 0x54; // dst = (u32)dst & imm
pub const ALU32_RSH_K: u8 = 0x74; // dst = (u32)dst >> imm
pub const ALU64_MOV_X: u8 = 0xbf; // dst = src
pub const ALU64_MOV_K: u8 = 0xb7; // dst = imm
pub const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
pub const JMP_EXIT: u8 = 0x95; // return r0

/// `struct bpf_cgroup_dev_ctx` offsets.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// `BPF_DEVCG_DEV_*` and `BPF_DEVCG_ACC_*`.
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The 8 bytes the kernel reads (registers share a byte: dst low nibble, src high).
    pub fn encode(&self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }
}

fn access_bits(access: Access) -> u32 {
    [
        (access.mknod, ACC_MKNOD),
        (access.read, ACC_READ),
        (access.write, ACC_WRITE),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |bits, (_, bit)| bits | bit)
}

/// The program allowing exactly what `rules` allow.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut insns = vec![
        Insn::new(LDX_MEM_W, 2, 1, CTX_ACCESS_TYPE, 0),
        Insn::new(ALU32_AND_K, 2, 0, 0, 0xffff),
        Insn::new(LDX_MEM_W, 3, 1, CTX_ACCESS_TYPE, 0),
        Insn::new(ALU32_RSH_K, 3, 0, 0, 16),
        Insn::new(LDX_MEM_W, 4, 1, CTX_MAJOR, 0),
        Insn::new(LDX_MEM_W, 5, 1, CTX_MINOR, 0),
    ];
    for rule in rules {
        let (block, unconditional) = rule_block(rule);
        insns.extend(block);
        if unconditional {
            return insns;
        }
    }
    insns.push(Insn::new(ALU64_MOV_K, 0, 0, 0, 0));
    insns.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    insns
}

/// One rule's tests and its `return 1`; whether it has no tests at all.
fn rule_block(rule: &DeviceRule) -> (Vec<Insn>, bool) {
    // Each test jumps past the block when it fails; offsets are filled in at the end.
    let mut tests: Vec<Insn> = Vec::new();
    let kind = match rule.kind {
        DeviceKind::All => None,
        DeviceKind::Char => Some(DEV_CHAR),
        DeviceKind::Block => Some(DEV_BLOCK),
    };
    if let Some(kind) = kind {
        tests.push(Insn::new(JMP_JNE_K, 2, 0, 0, kind as i32));
    }
    let denied = !access_bits(rule.access) & (ACC_MKNOD | ACC_READ | ACC_WRITE);
    if denied != 0 {
        // Any asked-for bit outside the allowed ones fails the rule.
        tests.push(Insn::new(ALU64_MOV_X, 1, 3, 0, 0));
        tests.push(Insn::new(ALU32_AND_K, 1, 0, 0, denied as i32));
        tests.push(Insn::new(JMP_JNE_K, 1, 0, 0, 0));
    }
    if let Some(major) = rule.major {
        tests.push(Insn::new(JMP_JNE_K, 4, 0, 0, major as i32));
    }
    if let Some(minor) = rule.minor {
        tests.push(Insn::new(JMP_JNE_K, 5, 0, 0, minor as i32));
    }
    let unconditional = tests.is_empty();
    tests.push(Insn::new(ALU64_MOV_K, 0, 0, 0, 1));
    tests.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    let len = tests.len();
    for (i, insn) in tests.iter_mut().enumerate() {
        if insn.code == JMP_JNE_K {
            // Relative to the next instruction; lands on the first one after the block.
            insn.off = (len - i - 1) as i16;
        }
    }
    (tests, unconditional)
}

/// The instructions as the bytes `BPF_PROG_LOAD` takes.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(Insn::encode).collect()
}

#[cfg(test)]
mod tests {
    use super::super::devices::{DEFAULT_ALLOWED, container_rules};
    use super::*;

    /// Runs `insns` the way the kernel would for one device access; panics on anything the
    /// verifier would refuse (jumps out of the program, reading a register never written,
    /// falling off the end) or an instruction this generator never emits.
    fn run(insns: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut regs: [Option<u64>; 11] = [None; 11];
        regs[1] = Some(0); // the context pointer; only ever used as a base here
        let reg = |regs: &[Option<u64>; 11], r: u8| {
            regs[r as usize].unwrap_or_else(|| panic!("r{r} read before it was written"))
        };
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "the program loops");
            let insn = insns.get(pc).expect("ran off the end of the program");
            pc += 1;
            match insn.code {
                LDX_MEM_W => {
                    assert_eq!(insn.src, 1, "loads only from the context");
                    assert_eq!(insn.off % 4, 0);
                    let value = ctx[(insn.off / 4) as usize];
                    regs[insn.dst as usize] = Some(value as u64);
                }
                ALU32_AND_K => {
                    let v = reg(&regs, insn.dst) as u32 & insn.imm as u32;
                    regs[insn.dst as usize] = Some(v as u64);
                }
                ALU32_RSH_K => {
                    let v = (reg(&regs, insn.dst) as u32) >> insn.imm;
                    regs[insn.dst as usize] = Some(v as u64);
                }
                ALU64_MOV_X => regs[insn.dst as usize] = Some(reg(&regs, insn.src)),
                ALU64_MOV_K => regs[insn.dst as usize] = Some(insn.imm as i64 as u64),
                JMP_JNE_K => {
                    if reg(&regs, insn.dst) != insn.imm as i64 as u64 {
                        let target = pc as i64 + insn.off as i64;
                        assert!(
                            (0..insns.len() as i64).contains(&target),
                            "jump out of the program"
                        );
                        pc = target as usize;
                    }
                }
                JMP_EXIT => return reg(&regs, 0),
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const RWM: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

    #[test]
    fn default_rules_allow_the_standard_devices_and_mknod_only() {
        let p = program(&container_rules(false, &[]));
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)] {
            for access in [ACC_READ, ACC_WRITE, ACC_MKNOD, RWM] {
                assert_eq!(
                    run(&p, DEV_CHAR, access, major, minor),
                    1,
                    "{major}:{minor}"
                );
            }
        }
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 7), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 200), 1);
        // /dev/mem, /dev/kmsg, /dev/console, a disk: mknod yes, open no.
        for (kind, major, minor) in [
            (DEV_CHAR, 1, 1),
            (DEV_CHAR, 1, 11),
            (DEV_CHAR, 5, 1),
            (DEV_BLOCK, 8, 0),
            (DEV_BLOCK, 1, 3),
        ] {
            assert_eq!(run(&p, kind, ACC_MKNOD, major, minor), 1);
            for access in [ACC_READ, ACC_WRITE, ACC_READ | ACC_MKNOD] {
                assert_eq!(
                    run(&p, kind, access, major, minor),
                    0,
                    "{kind} {major}:{minor}"
                );
            }
        }
    }

    #[test]
    fn a_read_only_device_can_be_read_not_written() {
        let rule = DeviceRule {
            access: Access::parse("r").unwrap(),
            ..DeviceRule::char(10, 229)
        };
        let p = program(&container_rules(false, &[rule]));
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 229), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 10, 229), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 10, 229), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 10, 229), 1, "from c *:* m");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 10, 229), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 228), 0);
    }

    #[test]
    fn block_rules_and_wildcards() {
        let rules = [DeviceRule {
            kind: DeviceKind::Block,
            major: Some(7),
            minor: None,
            access: Access::parse("rw").unwrap(),
        }];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 7, 12), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 7, 12), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 7, 12), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
    }

    #[test]
    fn privileged_is_one_unconditional_allow() {
        let p = program(&container_rules(true, &[]));
        assert_eq!(p.len(), 6 + 2, "{p:?}");
        assert_eq!(run(&p, DEV_BLOCK, RWM, 8, 0), 1);
        // Rules after an unconditional one are never emitted (unreachable code).
        let p = program(&[DeviceRule::ALL_DEVICES, DeviceRule::char(1, 3)]);
        assert_eq!(p.len(), 8);
    }

    #[test]
    fn no_rules_deny_everything() {
        let p = program(&[]);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn every_rule_is_one_block_and_the_encoding_is_the_kernels() {
        let p = program(&DEFAULT_ALLOWED);
        assert_eq!(p.last().unwrap().code, JMP_EXIT);
        let bytes = encode(&p);
        assert_eq!(bytes.len(), p.len() * 8);
        // r2 = *(u32 *)(r1 + 0): dst 2, src 1.
        assert_eq!(&bytes[..8], &[0x61, 0x12, 0, 0, 0, 0, 0, 0]);
        // if r4 != 136 goto +off, little-endian.
        let jne = Insn::new(JMP_JNE_K, 4, 0, 3, 136).encode();
        assert_eq!(jne, [0x55, 0x04, 3, 0, 136, 0, 0, 0]);
    }
}
