//! Training over the C ABI: a trainer object (the model being trained, Adam
//! moments, step count and workspace in one block of caller memory, or on
//! the heap with std) and one train step on a prepared minibatch (in the
//! data's units: the step standardises it with the model's inputs).

use crate::buffers::{input, size_answer, value_in, value_out};
use crate::handle::state_memory;
use crate::model::{model_ref, msde_model, place_model};
use crate::status::{guard, msde_error, msde_status};
use core::ffi::c_void;
use morphosde_core::Result;
use morphosde_core::error::{Arena, Detail, Error, ErrorKind, check_finite};
use morphosde_core::model::{Layout, TargetMode};
use morphosde_core::size::Size;
use morphosde_core::train::{AdamState, Batch, StepPlan, check_batch_shapes, train_step};

const TRAINER_TAG: u64 = u64::from_le_bytes(*b"msdeTRNR");

/// A trainer (opaque): the model being trained followed by its Adam moments
/// and the step workspace, sized for minibatches of at most n_max sources
/// and m_max plan targets.
pub struct msde_trainer {
    tag: u64,
    n_max: usize,
    m_max: usize,
    workspace_len: usize,
    pub(crate) steps: u64,
    #[cfg_attr(not(feature = "std"), allow(dead_code))] // read by the std-only free calls
    heap_bytes: usize,
}
const _: () = assert!(size_of::<msde_trainer>().is_multiple_of(8));

/// A prepared minibatch of n sources (row-major float arrays; NULL only
/// with length 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct msde_batch {
    /// Sources x (n x d) and their times t (n).
    pub x: *const f32,
    pub x_len: usize,
    pub t: *const f32,
    pub t_len: usize,
    /// Frame gap h_i > 0 of each source, time units (n).
    pub h: *const f32,
    pub h_len: usize,
    /// Teacher velocities (n x d), state units per time unit.
    pub v_hat: *const f32,
    pub v_hat_len: usize,
    /// UOT row masses r_i >= 0 (n).
    pub mass: *const f32,
    pub mass_len: usize,
    /// Pairwise targets: matched end point of each source (n x d).
    /// Plan-weighted targets: the target cloud (m x d). Read only when the
    /// model learns diffusion (may be NULL with length 0 otherwise).
    pub y: *const f32,
    pub y_len: usize,
    /// Plan rows (n x m) for plan-weighted targets; NULL/0 otherwise.
    pub plan: *const f32,
    pub plan_len: usize,
}

/// Loss parts of one train step (before its update).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct msde_step_loss {
    pub drift: f32,
    /// Unweighted diffusion loss (0 without diffusion).
    pub diffusion: f32,
    /// Diffusion-loss weight lambda(epoch) used.
    pub lambda: f32,
    /// drift + lambda * diffusion.
    pub total: f32,
    /// Gradient norm before clipping.
    pub grad_norm: f32,
    /// Steps taken by the trainer including this one.
    pub steps: u64,
}

fn sizes(
    layout: &Layout,
    config: &morphosde_core::model::Config,
    n_max: usize,
    m_max: usize,
) -> Result<(usize, usize)> {
    if n_max == 0 {
        return Err(Error::bad_dim("n_max", "must be at least 1"));
    }
    let ws = Size(StepPlan::new(config)?.workspace_len(n_max)) + staged_len(layout, n_max, m_max);
    let bytes = (Size(layout.len) * 3 + ws) * size_of::<f32>()
        + size_of::<msde_trainer>()
        + size_of::<msde_model>();
    Ok((ws.get(), size_answer::<u8>(bytes.get(), "n_max")?))
}

/// Floats of a batch's standardised copy: sources and teachers (n_max × d
/// each) and targets (max(n_max, m_max) × d).
fn staged_len(layout: &Layout, n_max: usize, m_max: usize) -> Size {
    (Size(n_max) * 2 + Size(n_max).max(m_max)) * layout.d
}

/// Parts of a live trainer: header, model pointer, Adam moments, workspace.
pub(crate) struct Parts<'a> {
    pub(crate) head: &'a mut msde_trainer,
    pub(crate) model: *mut msde_model,
    pub(crate) m: &'a mut [f32],
    pub(crate) v: &'a mut [f32],
    ws: &'a mut [f32],
}

/// # Safety
/// `ptr` NULL or a trainer of this library, used by this thread only.
pub(crate) unsafe fn trainer_parts<'a>(ptr: *mut msde_trainer) -> Result<Parts<'a>> {
    let head: &mut msde_trainer = unsafe { crate::buffers::value_out(ptr, "trainer") }?;
    if head.tag != TRAINER_TAG {
        return Err(Error::new(
            ErrorKind::CorruptModel,
            "trainer",
            "is not a live object of its type (uninitialised, freed or overwritten)",
        ));
    }
    // SAFETY: a tagged trainer is laid out as written by place_trainer.
    unsafe {
        let model = (ptr as *mut u8).add(size_of::<msde_trainer>()) as *mut msde_model;
        let (m, _) = model_ref(model, "trainer")?;
        let p = m.layout.len;
        let floats = (model as *mut u8).add(size_of::<msde_model>()) as *mut f32;
        Ok(Parts {
            model,
            m: core::slice::from_raw_parts_mut(floats.add(p), p),
            v: core::slice::from_raw_parts_mut(floats.add(2 * p), p),
            ws: core::slice::from_raw_parts_mut(floats.add(3 * p), head.workspace_len),
            head,
        })
    }
}

/// Bytes of caller memory msde_trainer_init needs to train `model` on
/// minibatches of at most n_max sources and m_max plan targets (m_max is
/// ignored for pairwise targets), written to *out_bytes.
///
/// # Safety
/// `model` a model of this library; `out_bytes` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_trainer_state_len(
    model: *const msde_model,
    n_max: usize,
    m_max: usize,
    out_bytes: *mut usize,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, _) = unsafe { model_ref(model, "model") }?;
        let out = unsafe { value_out(out_bytes, "out_bytes") }?;
        *out = sizes(&m.layout, &m.config, n_max, m_max)?.1;
        Ok(())
    })
}

/// # Safety
/// `at` aligned and valid for `bytes` bytes from `sizes`.
unsafe fn place_trainer(
    at: *mut u8,
    model: &msde_model,
    params: &[f32],
    n_max: usize,
    m_max: usize,
    workspace_len: usize,
    heap_bytes: usize,
) -> Result<*mut msde_trainer> {
    let p = params.len();
    // SAFETY: the block holds header, model, 3p + workspace floats.
    unsafe {
        let model_at = at.add(size_of::<msde_trainer>());
        let floats = model_at.add(size_of::<msde_model>()) as *mut f32;
        core::ptr::write_bytes(floats.add(p), 0, 2 * p);
        place_model(model_at, model.config, model.layout, 0, |dst| {
            dst.copy_from_slice(params);
            Ok(())
        })?;
        let trainer = at as *mut msde_trainer;
        core::ptr::write(
            trainer,
            msde_trainer {
                tag: TRAINER_TAG,
                n_max,
                m_max,
                workspace_len,
                steps: 0,
                heap_bytes,
            },
        );
        Ok(trainer)
    }
}

/// Creates a trainer in caller memory `mem` (mem_bytes >=
/// msde_trainer_state_len, aligned to MSDE_STATE_ALIGN): a copy of
/// `model` (configuration, including the optimiser settings, and
/// parameters), zero Adam moments, step count 0. Writes its address
/// (== mem) to *out. `model` is not referenced afterwards.
///
/// # Safety
/// `mem` valid for mem_bytes writable bytes, used for nothing else while
/// the trainer is in use and not overlapping `model`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_trainer_init(
    mem: *mut c_void,
    mem_bytes: usize,
    model: *const msde_model,
    n_max: usize,
    m_max: usize,
    out: *mut *mut msde_trainer,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let (m, params) = unsafe { model_ref(model, "model") }?;
        let out = unsafe { value_out(out, "out") }?;
        let (ws, bytes) = sizes(&m.layout, &m.config, n_max, m_max)?;
        let at = state_memory(mem, mem_bytes, bytes)?;
        *out = unsafe { place_trainer(at, m, params, n_max, m_max, ws, 0) }?;
        Ok(())
    })
}

/// The model a trainer trains (its current parameters), written to *out:
/// owned by the trainer (never free it), valid while the trainer is, and
/// not to be used while msde_trainer_step runs. Save it with
/// msde_model_save, sample from it, or evaluate it like any model.
///
/// # Safety
/// `trainer` a trainer of this library; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_trainer_model(
    trainer: *mut msde_trainer,
    out: *mut *const msde_model,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let parts = unsafe { trainer_parts(trainer) }?;
        *unsafe { value_out(out, "out") }? = parts.model;
        Ok(())
    })
}

/// One training step at `epoch` (it sets the diffusion-loss warm-up
/// weight) on a prepared minibatch in the data's units: the batch's states
/// and velocities are standardised with the model's inputs (see
/// msde_model_get_inputs; a copy in the trainer, the caller's arrays are
/// not changed), then forward, covariance targets (with diffusion), losses,
/// manual backward, gradient clipping, Adam; the losses are those of the
/// standardised coordinates. On MSDE_OK the trainer's parameters and Adam
/// state are updated and *loss (optional, NULL to skip) receives the loss
/// parts before the update.
///
/// Errors: NULL pointers, n = t_len of 0 or above n_max, m above m_max,
/// lengths that disagree (MSDE_ERR_BAD_DIMENSION), NaN/Inf in the batch,
/// a non-finite loss or gradient (MSDE_ERR_NUMERICAL). On any error the
/// parameters, Adam state and step count are left exactly as they were.
///
/// # Safety
/// `trainer` a trainer of this library, used by one thread at a time;
/// `batch` valid and its arrays valid for their lengths, outside the
/// trainer's memory.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msde_trainer_step(
    trainer: *mut msde_trainer,
    epoch: u32,
    batch: *const msde_batch,
    loss: *mut msde_step_loss,
    err: *mut msde_error,
) -> msde_status {
    guard(err, || {
        let b = unsafe { value_in(batch, "batch") }?;
        let loss = unsafe { crate::buffers::optional_out(loss, "loss") }?;
        let parts = unsafe { trainer_parts(trainer) }?;
        let (m, _) = unsafe { model_ref(parts.model, "trainer") }?;
        let (config, layout) = (m.config, m.layout);
        let batch = Batch {
            x: unsafe { input(b.x, b.x_len, "x") }?,
            t: unsafe { input(b.t, b.t_len, "t") }?,
            h: unsafe { input(b.h, b.h_len, "h") }?,
            v_hat: unsafe { input(b.v_hat, b.v_hat_len, "v_hat") }?,
            mass: unsafe { input(b.mass, b.mass_len, "mass") }?,
            y: unsafe { input(b.y, b.y_len, "y") }?,
            plan: unsafe { input(b.plan, b.plan_len, "plan") }?,
        };
        // Every length first: nothing is read before the shapes agree.
        let step_plan = StepPlan::new(&config)?;
        check_batch_shapes(&step_plan, &batch)?;
        let n = batch.len();
        if n > parts.head.n_max {
            return Err(
                Error::bad_dim("t", "more sources than the trainer's n_max").with(Detail::Len {
                    expected: parts.head.n_max,
                    got: n,
                }),
            );
        }
        let plan_read = layout.head.is_some() && config.target_mode == TargetMode::PlanWeighted;
        if plan_read {
            let m_targets = batch.y.len() / layout.d;
            if m_targets > parts.head.m_max {
                return Err(
                    Error::bad_dim("y", "more targets than the trainer's m_max").with(
                        Detail::Len {
                            expected: parts.head.m_max,
                            got: m_targets,
                        },
                    ),
                );
            }
        }
        let plan: &[f32] = if plan_read { batch.plan } else { &[] };
        for (a, name) in [(batch.h, "h"), (batch.mass, "mass"), (plan, "plan")] {
            check_finite(a, name)?;
        }
        if batch.h.iter().any(|&h| h <= 0.0) {
            return Err(Error::new(
                ErrorKind::BadDimension,
                "h",
                "frame gaps must be > 0",
            ));
        }
        if batch.mass.iter().any(|&r| r < 0.0) {
            return Err(Error::new(
                ErrorKind::BadDimension,
                "mass",
                "row masses must be >= 0",
            ));
        }
        let (_, params) = unsafe { crate::model::model_params_mut(parts.model, "trainer") }?;
        // The standardised copy: every length checked against the room.
        let n_d = n * layout.d;
        // Targets are read only with a diffusion head.
        let y_in: &[f32] = if layout.head.is_some() { batch.y } else { &[] };
        let y_room = parts.head.n_max.max(parts.head.m_max) * layout.d;
        if y_in.len() > y_room {
            return Err(
                Error::bad_dim("y", "more targets than the trainer's n_max and m_max").with(
                    Detail::Len {
                        expected: y_room,
                        got: y_in.len(),
                    },
                ),
            );
        }
        let inputs = layout.inputs(params);
        let mut arena = Arena::new(&mut *parts.ws);
        let x = arena.take(n_d)?;
        let v_hat = arena.take(n_d)?;
        let y = arena.take(y_in.len())?;
        x.copy_from_slice(batch.x);
        v_hat.copy_from_slice(batch.v_hat);
        y.copy_from_slice(y_in);
        inputs.standardise(x);
        inputs.standardise_velocities(v_hat);
        inputs.standardise(y);
        let standardised = Batch {
            x,
            v_hat,
            y,
            ..batch
        };
        let mut adam = AdamState {
            m: parts.m,
            v: parts.v,
            steps: parts.head.steps,
        };
        let l = train_step(
            &step_plan,
            epoch,
            &standardised,
            params,
            &mut adam,
            arena.rest(),
        )?;
        parts.head.steps = adam.steps;
        if let Some(out) = loss {
            *out = msde_step_loss {
                drift: l.drift,
                diffusion: l.diffusion,
                lambda: l.lambda,
                total: l.total,
                grad_norm: l.grad_norm,
                steps: adam.steps,
            };
        }
        Ok(())
    })
}

#[cfg(feature = "std")]
mod heap {
    use super::*;
    use crate::handle::{on_heap, release};

    /// std only: msde_trainer_init on the heap. Free with msde_trainer_free.
    ///
    /// # Safety
    /// `model` a model of this library; `out` writable.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn msde_trainer_new(
        model: *const msde_model,
        n_max: usize,
        m_max: usize,
        out: *mut *mut msde_trainer,
        err: *mut msde_error,
    ) -> msde_status {
        guard(err, || {
            let (m, params) = unsafe { model_ref(model, "model") }?;
            let out = unsafe { value_out(out, "out") }?;
            let (ws, bytes) = sizes(&m.layout, &m.config, n_max, m_max)?;
            *out = on_heap(bytes, |at| unsafe {
                place_trainer(at, m, params, n_max, m_max, ws, bytes)
            })?;
            Ok(())
        })
    }

    /// std only: frees a trainer from msde_trainer_new (and the model
    /// msde_trainer_model returned for it). NULL is accepted; a trainer in
    /// caller memory is left alone.
    ///
    /// # Safety
    /// `trainer` NULL or a live trainer of this library, unused afterwards.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn msde_trainer_free(trainer: *mut msde_trainer) {
        let _ = guard(core::ptr::null_mut(), || {
            if trainer.is_null() {
                return Ok(());
            }
            let parts = unsafe { trainer_parts(trainer) }?;
            let bytes = parts.head.heap_bytes;
            if bytes > 0 {
                parts.head.tag = 0;
                // SAFETY: a heap trainer of `bytes` bytes.
                unsafe { release(trainer.cast(), bytes) };
            }
            Ok(())
        });
    }
}

#[cfg(feature = "std")]
pub use heap::{msde_trainer_free, msde_trainer_new};
