//! The machinery of the C ABI's buffer-call fuzz (`abi_fuzz.rs`,
//! `abi_fuzz_training.rs`): a [`Case`] is one valid call of one function;
//! a [`Break`] spoils one thing in it — a buffer pointer NULL with its
//! length kept, a length one short or one long (every buffer ends at an
//! unreadable page, so a read or write past a given length faults), a
//! required buffer empty, a pointer off its alignment, a NaN or infinity
//! in a float input, an out-of-range index, a size argument at zero or
//! address-space scale, a NULL handle or config, a config value out of
//! range — and [`check`] asserts the documented status, every output
//! untouched and the state of the objects the call changes (a model's or
//! trainer's parameters) as it was.
#![allow(
    unsafe_code,
    reason = "reads guard-paged buffers and plain C structs byte by byte"
)]

use super::guarded::Guarded;
use morphosde::msde_status::{self, *};
use std::mem::MaybeUninit;
use std::ptr::{null, null_mut};

/// What the outputs hold before a call (floats; the bits of it in uint32
/// outputs).
pub const SENTINEL: f32 = -12345.0;

/// Size arguments a [`Break::Dim`] substitutes: none of them agrees with
/// the lengths of a case (all buffers are short and non-empty).
const HOSTILE_DIMS: [usize; 4] = [0, 1 << 40, usize::MAX / 3, usize::MAX];

/// xorshift64*: a fixed, dependency-free stream.
pub struct Stream(pub u64);

impl Stream {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// Read; NaN or infinity refused.
    Input,
    /// Read; NULL with length 0 skips it.
    OptionalInput,
    /// Written on success only.
    Output,
    /// Written on success only; NULL with length 0 skips it.
    OptionalOutput,
    /// Scratch: contents garbage, a longer one is fine.
    Workspace,
}

/// The elements of a buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Elem {
    F32,
    /// uint32, kept as the bits of an `f32`; `out_of_range` is a value the
    /// call refuses and its status (`None`: every value is valid).
    U32 {
        out_of_range: Option<(u32, msde_status)>,
    },
}

pub struct Buffer {
    values: Vec<f32>,
    role: Role,
    elem: Elem,
}

/// A float buffer the call reads.
pub fn input(values: Vec<f32>, role: Role) -> Buffer {
    Buffer {
        values,
        role,
        elem: Elem::F32,
    }
}

/// A uint32 buffer the call reads.
pub fn indices(values: &[u32], role: Role, out_of_range: Option<(u32, msde_status)>) -> Buffer {
    Buffer {
        values: values.iter().map(|&v| f32::from_bits(v)).collect(),
        role,
        elem: Elem::U32 { out_of_range },
    }
}

/// A float output or workspace of `len` sentinels.
pub fn out(len: usize, role: Role) -> Buffer {
    input(vec![SENTINEL; len], role)
}

/// A uint32 output or workspace of `len` sentinels.
pub fn out_u32(len: usize, role: Role) -> Buffer {
    indices(&vec![SENTINEL.to_bits(); len], role, None)
}

/// One buffer as the call receives it.
#[derive(Clone, Copy)]
pub struct Arg {
    pub ptr: *mut f32,
    pub len: usize,
}

impl Arg {
    /// The buffer as uint32 elements.
    pub fn u32(self) -> *mut u32 {
        self.ptr.cast()
    }
}

/// What one call of a case gets: its buffers, its size arguments, which of
/// its object pointers (handle, config, struct argument) is NULL, and which
/// of its bad configs to pass.
pub struct Knobs<'a> {
    pub a: &'a [Arg],
    pub dims: &'a [usize],
    pub null_object: Option<usize>,
    pub bad_config: Option<usize>,
}

impl Knobs<'_> {
    /// `p`, or NULL when object `j` is the one broken.
    pub fn obj<T>(&self, j: usize, p: *const T) -> *const T {
        if self.null_object == Some(j) {
            null()
        } else {
            p
        }
    }

    /// `p`, or NULL when object `j` is the one broken.
    pub fn obj_mut<T>(&self, j: usize, p: *mut T) -> *mut T {
        if self.null_object == Some(j) {
            null_mut()
        } else {
            p
        }
    }
}

type Call = Box<dyn Fn(&Knobs) -> msde_status>;
type State = Box<dyn Fn() -> Vec<f32>>;

pub struct Case {
    pub name: &'static str,
    buffers: Vec<Buffer>,
    dims: Vec<usize>,
    objects: usize,
    bad_configs: usize,
    state: Option<State>,
    call: Call,
}

impl Case {
    /// A call of `name` on `buffers` (in the order `call` reads them from
    /// [`Knobs::a`]).
    pub fn new(
        name: &'static str,
        buffers: Vec<Buffer>,
        call: impl Fn(&Knobs) -> msde_status + 'static,
    ) -> Self {
        Case {
            name,
            buffers,
            dims: Vec::new(),
            objects: 0,
            bad_configs: 0,
            state: None,
            call: Box::new(call),
        }
    }

    /// The valid size arguments (the call reads them from [`Knobs::dims`]).
    pub fn dims(mut self, dims: &[usize]) -> Self {
        self.dims = dims.to_vec();
        self
    }

    /// Object pointers the call passes through [`Knobs::obj`]: a NULL one
    /// gets `MSDE_ERR_NULL_POINTER`.
    pub fn objects(mut self, count: usize) -> Self {
        self.objects = count;
        self
    }

    /// Configs the call knows how to spoil (`Knobs::bad_config`
    /// `0..count`): each gets `MSDE_ERR_BAD_CONFIG`.
    pub fn bad_configs(mut self, count: usize) -> Self {
        self.bad_configs = count;
        self
    }

    /// State a failed call must leave as it was (read before and after).
    pub fn state(mut self, read: impl Fn() -> Vec<f32> + 'static) -> Self {
        self.state = Some(Box::new(read));
        self
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Break {
    Null(usize),
    Short(usize),
    Long(usize),
    Empty(usize),
    /// The pointer one byte on (its length kept).
    Misaligned(usize),
    NonFinite(usize, usize, f32),
    OutOfRange(usize, usize, u32, msde_status),
    Dim(usize, usize),
    NullObject(usize),
    BadConfig(usize),
}

impl Break {
    pub fn pick(case: &Case, s: &mut Stream) -> Break {
        match s.below(10) {
            6 | 7 if !case.dims.is_empty() => Break::Dim(
                s.below(case.dims.len()),
                HOSTILE_DIMS[s.below(HOSTILE_DIMS.len())],
            ),
            8 if case.objects > 0 => Break::NullObject(s.below(case.objects)),
            9 if case.bad_configs > 0 => Break::BadConfig(s.below(case.bad_configs)),
            _ => Self::pick_buffer(case, s),
        }
    }

    fn pick_buffer(case: &Case, s: &mut Stream) -> Break {
        let i = s.below(case.buffers.len());
        let b = &case.buffers[i];
        let reads = matches!(b.role, Role::Input | Role::OptionalInput);
        match (s.below(6), b.elem) {
            (0, _) => Break::Null(i),
            (1, _) => Break::Short(i),
            (2, _) => Break::Long(i),
            (3, _) => Break::Empty(i),
            (4, _) => Break::Misaligned(i),
            (_, Elem::F32) if reads => Break::NonFinite(
                i,
                s.below(b.values.len()),
                [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][s.below(3)],
            ),
            (
                _,
                Elem::U32 {
                    out_of_range: Some((v, status)),
                },
            ) if reads => Break::OutOfRange(i, s.below(b.values.len()), v, status),
            _ => Break::Short(i),
        }
    }

    /// The statuses the documentation allows (OK where the break is
    /// harmless).
    pub fn allowed(self, case: &Case) -> Vec<msde_status> {
        let role = |i: usize| case.buffers[i].role;
        let optional = |i: usize| matches!(role(i), Role::OptionalInput | Role::OptionalOutput);
        match self {
            Break::Null(_) | Break::NullObject(_) => vec![MSDE_ERR_NULL_POINTER],
            Break::Short(i) | Break::Empty(i) if role(i) == Role::Workspace => {
                vec![MSDE_ERR_BUFFER_TOO_SMALL]
            }
            Break::Long(i) if role(i) == Role::Workspace => vec![MSDE_OK],
            Break::Empty(i) if optional(i) => vec![MSDE_OK],
            Break::Short(_) | Break::Long(_) | Break::Empty(_) => vec![MSDE_ERR_BAD_DIMENSION],
            Break::Misaligned(_) => vec![MSDE_ERR_MISALIGNED],
            Break::NonFinite(..) => vec![MSDE_ERR_NON_FINITE],
            Break::OutOfRange(.., status) => vec![status],
            Break::Dim(..) => vec![
                MSDE_ERR_BAD_DIMENSION,
                MSDE_ERR_BAD_CONFIG,
                MSDE_ERR_TOO_LARGE,
                MSDE_ERR_BUFFER_TOO_SMALL,
            ],
            Break::BadConfig(_) => vec![MSDE_ERR_BAD_CONFIG],
        }
    }
}

/// Runs `case` with `brk` applied and returns its status; on failure
/// asserts that no output was written and the case's state is unchanged.
pub fn run(case: &Case, brk: Option<Break>) -> msde_status {
    let mut guarded: Vec<Guarded<f32>> = Vec::new();
    let mut args = Vec::new();
    for (i, b) in case.buffers.iter().enumerate() {
        let mut values = b.values.clone();
        match brk {
            Some(Break::NonFinite(j, k, v)) if j == i => values[k] = v,
            Some(Break::OutOfRange(j, k, v, _)) if j == i => values[k] = f32::from_bits(v),
            _ => {}
        }
        let mut g = Guarded::new(&values);
        let mut arg = Arg {
            ptr: g.mut_ptr(),
            len: values.len(),
        };
        match brk {
            Some(Break::Null(j)) if j == i => arg.ptr = null_mut(),
            Some(Break::Short(j)) if j == i => arg.len -= 1,
            Some(Break::Long(j)) if j == i => arg.len += 1,
            Some(Break::Misaligned(j)) if j == i => {
                arg.ptr = arg.ptr.cast::<u8>().wrapping_add(1).cast();
            }
            Some(Break::Empty(j)) if j == i => {
                arg = Arg {
                    ptr: null_mut(),
                    len: 0,
                }
            }
            _ => {}
        }
        guarded.push(g);
        args.push(arg);
    }
    let mut dims = case.dims.clone();
    if let Some(Break::Dim(j, v)) = brk {
        dims[j] = v;
    }
    let knobs = Knobs {
        a: &args,
        dims: &dims,
        null_object: match brk {
            Some(Break::NullObject(j)) => Some(j),
            _ => None,
        },
        bad_config: match brk {
            Some(Break::BadConfig(j)) => Some(j),
            _ => None,
        },
    };
    let before = case.state.as_ref().map(|read| read());
    let status = (case.call)(&knobs);
    if status != MSDE_OK {
        for (b, g) in case.buffers.iter().zip(&guarded) {
            if matches!(b.role, Role::Output | Role::OptionalOutput) {
                assert!(
                    g.as_slice()
                        .iter()
                        .all(|v| v.to_bits() == SENTINEL.to_bits()),
                    "{}: {brk:?} gave {status:?} and wrote an output",
                    case.name
                );
            }
        }
        let after = case.state.as_ref().map(|read| read());
        assert!(
            bits(&before) == bits(&after),
            "{}: {brk:?} gave {status:?} and changed the state",
            case.name
        );
    }
    status
}

fn bits(state: &Option<Vec<f32>>) -> Option<Vec<u32>> {
    state
        .as_ref()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
}

/// Runs every case valid once (must be `MSDE_OK`) and then `trials` times
/// with a break drawn from `stream`, asserting the allowed statuses;
/// returns the number of broken calls.
pub fn check(cases: &[Case], trials: usize, stream: &mut Stream) -> usize {
    let mut calls = 0;
    for case in cases {
        assert_eq!(run(case, None), MSDE_OK, "{}: the valid call", case.name);
        for _ in 0..trials {
            let brk = Break::pick(case, stream);
            let status = run(case, Some(brk));
            let allowed = brk.allowed(case);
            assert!(
                allowed.contains(&status),
                "{}: {brk:?} gave {status:?}, documented {allowed:?}",
                case.name
            );
            calls += 1;
        }
    }
    calls
}

/// Calls `f` with a `T` whose bytes are all `0xA5` and returns its status;
/// on failure asserts that `f` left every byte alone. For the scalar and
/// struct outputs (results, summaries, reports) of plain C types.
pub fn untouched<T>(f: impl FnOnce(*mut T) -> msde_status) -> msde_status {
    let mut value = MaybeUninit::<T>::uninit();
    unsafe { value.as_mut_ptr().write_bytes(0xA5, 1) };
    let status = f(value.as_mut_ptr());
    if status != MSDE_OK {
        let bytes = unsafe {
            std::slice::from_raw_parts(value.as_ptr().cast::<u8>(), std::mem::size_of::<T>())
        };
        assert!(
            bytes.iter().all(|&b| b == 0xA5),
            "{status:?} wrote a {}",
            std::any::type_name::<T>()
        );
    }
    status
}

/// A plain C struct filled by `f` (a `*_default` call), which must succeed.
pub fn filled<T>(f: impl FnOnce(*mut T) -> msde_status) -> T {
    let mut value = MaybeUninit::<T>::zeroed();
    assert_eq!(f(value.as_mut_ptr()), MSDE_OK);
    unsafe { value.assume_init() }
}

/// A size query's answer, which must succeed.
pub fn query(f: impl FnOnce(*mut usize) -> msde_status) -> usize {
    let mut len = 0;
    assert_eq!(f(&mut len), MSDE_OK);
    len
}

/// `rows × d` smooth values in [−1, 1], shifted by `phase`.
pub fn cloud(rows: usize, d: usize, phase: f32) -> Vec<f32> {
    (0..rows * d)
        .map(|k| (k as f32 * 0.61 + phase).sin())
        .collect()
}
