//! Snapshot tables: the input of `train` and the built-in dataset's output.
//!
//! Format: a CSV file with a header line. One row per observation (one
//! embryo at one time): a time column (any unit; the frame gaps `h` are in
//! it), an optional track-id column and the `d` morphology coordinates.
//! Track ids are non-negative integers shared by the rows of one tracked
//! embryo; a negative, `NaN` or empty id cell marks an untracked
//! observation. Times are read as `f64` (see [`f32_times`]).

use crate::csvio::{Table, read_table, write_atomic};
use crate::times::TimeGrid;
use morphosde_core::integrate::rollout::default_workers;
use morphosde_core::minibatch::UNTRACKED;
use morphosde_core::synthetic::{GroundTruth, SnapshotDesign, snapshots_workspace_len};
use std::path::Path;

/// Observations `z` (`n × d`, row-major), their times `t` (length `n`) and
/// track ids (length `n`; `None` = untracked).
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshots {
    pub d: usize,
    pub z: Vec<f32>,
    /// Times relative to [`Snapshots::time_origin`] (see [`f32_times`]).
    pub t: Vec<f32>,
    /// What was subtracted from the file's times: 0, or the first time
    /// when the file's times are too large for `f32` to keep their gaps
    /// (Unix seconds, say).
    pub time_origin: f64,
    pub track: Vec<Option<u32>>,
    /// Names of the `d` coordinates (for output headers).
    pub names: Vec<String>,
}

/// Which columns hold the coordinates.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum CoordinateColumns {
    /// Every column except the time and id columns.
    #[default]
    Rest,
    /// Columns whose name starts with the prefix, in file order.
    Prefix(String),
    /// The named (or 0-based numbered) columns, in this order.
    Named(Vec<String>),
}

impl CoordinateColumns {
    /// The choice the flags `--columns` (names or numbers) and `--prefix`
    /// make; neither: every other column.
    pub fn from_flags(columns: &Option<Vec<String>>, prefix: &Option<String>) -> Self {
        match (columns, prefix) {
            (Some(c), _) => CoordinateColumns::Named(c.clone()),
            (None, Some(p)) => CoordinateColumns::Prefix(p.clone()),
            (None, None) => CoordinateColumns::Rest,
        }
    }
}

impl Snapshots {
    /// Snapshots of a known process observed as `design` says
    /// (`GroundTruth::snapshots`), coordinates named `z0…`.
    pub fn sampled<P: GroundTruth + Sync>(
        process: &P,
        design: &SnapshotDesign<'_, f32>,
    ) -> Result<Self, String> {
        let d = process.d();
        let obs = design.observations();
        let (mut z, mut t, mut track) = (vec![0.0f32; obs * d], vec![0.0f32; obs], vec![0u32; obs]);
        let mut ws = vec![0.0f32; snapshots_workspace_len(process, design, default_workers())];
        process
            .snapshots(design, &mut z, &mut t, &mut track, &mut ws)
            .map_err(|e| e.to_string())?;
        Ok(Snapshots {
            d,
            z,
            t,
            track: track
                .iter()
                .map(|&i| (i != UNTRACKED).then_some(i))
                .collect(),
            names: (0..d).map(|k| format!("z{k}")).collect(),
            time_origin: 0.0,
        })
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether the table has no observations.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Reads a snapshot table (see the module docs). `time` and `id` name
    /// columns by header name or 0-based number.
    pub fn read(
        path: &Path,
        time: &str,
        id: Option<&str>,
        coords: &CoordinateColumns,
    ) -> Result<Self, String> {
        let table = read_table(path, "--data")?;
        Self::from_table(&table, time, id, coords)
            .map_err(|e| format!("--data ('{}'): {e}", path.display()))
    }

    /// Builds snapshots from a parsed table (see [`Snapshots::read`]).
    pub fn from_table(
        table: &Table,
        time: &str,
        id: Option<&str>,
        coords: &CoordinateColumns,
    ) -> Result<Self, String> {
        let time_col = table
            .column_index(time)
            .map_err(|e| format!("time column: {e}"))?;
        let id_col = id
            .map(|s| table.column_index(s).map_err(|e| format!("id column: {e}")))
            .transpose()?;
        let header = table.header.as_deref();
        let name_of = |c: usize| header.map_or_else(|| format!("z{c}"), |h| h[c].clone());
        let coord_cols: Vec<usize> = match coords {
            CoordinateColumns::Rest => (0..table.cols)
                .filter(|&c| c != time_col && Some(c) != id_col)
                .collect(),
            CoordinateColumns::Prefix(p) => {
                let h = header.ok_or("a coordinate prefix needs a header line")?;
                (0..table.cols)
                    .filter(|&c| h[c].starts_with(p.as_str()))
                    .collect()
            }
            CoordinateColumns::Named(names) => names
                .iter()
                .map(|s| table.column_index(s))
                .collect::<Result<_, _>>()?,
        };
        if coord_cols.is_empty() {
            return Err("no coordinate columns selected".into());
        }
        if let Some(c) = coord_cols
            .iter()
            .find(|&&c| c == time_col || Some(c) == id_col)
        {
            return Err(format!(
                "column '{}' is both a coordinate and the time/id column",
                name_of(*c)
            ));
        }
        let (t, time_origin) = f32_times(&table.column(time_col))?;
        let raw = table.select(&coord_cols);
        if let Some(i) = raw.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "row {}, column '{}': the coordinate is not finite",
                i / coord_cols.len() + 1,
                name_of(coord_cols[i % coord_cols.len()])
            ));
        }
        if let Some(i) = raw.iter().position(|x| x.abs() > MAX_COORDINATE) {
            return Err(format!(
                "row {}, column '{}': the coordinate {} is too large for 32-bit floats \
                 (squared distances overflow above {MAX_COORDINATE:e}); rescale the column",
                i / coord_cols.len() + 1,
                name_of(coord_cols[i % coord_cols.len()]),
                raw[i]
            ));
        }
        let z: Vec<f32> = raw.iter().map(|&x| x as f32).collect();
        let track = match id_col {
            None => vec![None; table.rows],
            Some(c) => table
                .column(c)
                .iter()
                .enumerate()
                .map(|(r, &v)| match v {
                    v if v.is_nan() || v < 0.0 => Ok(None),
                    v if v.fract() == 0.0 && v <= u32::MAX as f64 => Ok(Some(v as u32)),
                    v => Err(format!(
                        "row {}: track id {v} is not a non-negative integer",
                        r + 1
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Snapshots {
            d: coord_cols.len(),
            z,
            t,
            track,
            names: coord_cols.iter().map(|&c| name_of(c)).collect(),
            time_origin,
        })
    }

    /// Names of coordinates that look like track ids (`id`, `track`,
    /// `track_id`, `embryo`, `embryo_id`, any case): without `--id-column`
    /// such a column is trained as a coordinate, which is seldom meant.
    pub fn id_like_coordinates(&self) -> Vec<&str> {
        const ID_NAMES: [&str; 5] = ["id", "track", "track_id", "embryo", "embryo_id"];
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| ID_NAMES.contains(&n.to_ascii_lowercase().as_str()))
            .collect()
    }

    /// The distinct times of the observations (relative to
    /// [`Snapshots::time_origin`], as `t`).
    pub fn grid(&self) -> TimeGrid {
        TimeGrid::new(self.t.iter().map(|&t| t as f64))
    }

    /// The distinct times in the file's units.
    pub fn file_times(&self) -> Vec<f64> {
        self.grid()
            .times
            .iter()
            .map(|&t| t + self.time_origin)
            .collect()
    }

    /// The observations `keep` accepts (by row), in order.
    pub fn retain(&self, keep: impl Fn(usize) -> bool) -> Snapshots {
        let rows: Vec<usize> = (0..self.len()).filter(|&i| keep(i)).collect();
        Snapshots {
            d: self.d,
            z: rows
                .iter()
                .flat_map(|&i| self.z[i * self.d..(i + 1) * self.d].iter().copied())
                .collect(),
            t: rows.iter().map(|&i| self.t[i]).collect(),
            track: rows.iter().map(|&i| self.track[i]).collect(),
            names: self.names.clone(),
            time_origin: self.time_origin,
        }
    }

    /// The rows at the time of the data that `at` matches (an error naming
    /// `what` if none does).
    pub fn at_time(&self, at: f64, what: &str) -> Result<Snapshots, String> {
        let grid = self.grid();
        let bin = grid.times[grid.find(at - self.time_origin, what)?];
        Ok(self.retain(|i| grid.matches(self.t[i] as f64, bin)))
    }

    /// Time selection: without the rows at the `exclude` times, or (when
    /// `keep` is not empty) only the rows at the `keep` times. Every given
    /// time must match a time of the data (the flags `--exclude-times` and
    /// `--times` are named in the errors). Returns the selection and the
    /// data's times it dropped.
    pub fn select_times(
        &self,
        exclude: &[f64],
        keep: &[f64],
    ) -> Result<(Snapshots, Vec<f64>), String> {
        let grid = self.grid();
        let find = |times: &[f64], what: &str| -> Result<Vec<f64>, String> {
            times
                .iter()
                .map(|&t| grid.find(t - self.time_origin, what).map(|b| grid.times[b]))
                .collect()
        };
        let excluded = find(exclude, "--exclude-times")?;
        let kept = find(keep, "--times")?;
        let dropped: Vec<f64> = grid
            .times
            .iter()
            .copied()
            .filter(|t| excluded.contains(t) || (!kept.is_empty() && !kept.contains(t)))
            .collect();
        let selection = self.retain(|i| {
            let t = self.t[i] as f64;
            !dropped.iter().any(|&b| grid.matches(t, b))
        });
        let dropped = dropped.iter().map(|&t| t + self.time_origin).collect();
        Ok((selection, dropped))
    }

    /// Writes the table with columns `t, id, <names…>` (id −1 = untracked).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        write_atomic(path, |w| {
            writeln!(w, "t,id,{}", self.names.join(","))?;
            for i in 0..self.len() {
                let id = self.track[i].map_or(-1, i64::from);
                write!(w, "{},{id}", self.t[i] as f64 + self.time_origin)?;
                for x in &self.z[i * self.d..(i + 1) * self.d] {
                    write!(w, ",{x}")?;
                }
                writeln!(w)?;
            }
            Ok(())
        })
    }
}

/// Largest coordinate magnitude accepted: squares of larger values, and
/// sums of a few of them, overflow `f32`.
const MAX_COORDINATE: f64 = 1e18;

/// Largest relative change of a gap between consecutive distinct times
/// that rounding them to `f32` may cause.
const GAP_TOLERANCE: f64 = 1e-4;

/// A time column (read as `f64`) as `f32` times and the origin subtracted
/// from them. The distinct times are formed in `f64` first; when rounding
/// the file's values to `f32` would change a gap between consecutive
/// distinct times by more than `GAP_TOLERANCE` of it (or merge two of
/// them), the times are taken relative to the first one (the origin);
/// otherwise the origin is 0 and the times are the file's. An error when
/// even the relative times cannot keep the gaps.
pub fn f32_times(t: &[f64]) -> Result<(Vec<f32>, f64), String> {
    if let Some(i) = t.iter().position(|x| !x.is_finite()) {
        return Err(format!("row {}: the time is not finite", i + 1));
    }
    let mut bins = t.to_vec();
    bins.sort_by(f64::total_cmp);
    bins.dedup();
    let keeps_gaps = |origin: f64| {
        let round = |b: f64| ((b - origin) as f32) as f64;
        bins.iter().all(|&b| round(b).is_finite())
            && bins.windows(2).all(|w| {
                let gap = w[1] - w[0];
                (round(w[1]) - round(w[0]) - gap).abs() <= GAP_TOLERANCE * gap
            })
    };
    let origin = if keeps_gaps(0.0) { 0.0 } else { bins[0] };
    if !keeps_gaps(origin) {
        let w = bins
            .windows(2)
            .min_by(|a, b| (a[1] - a[0]).total_cmp(&(b[1] - b[0])))
            .unwrap_or(&bins[..]);
        return Err(format!(
            "time column: times {} and {} are too close for 32-bit floats even \
             relative to the first time {}; rescale the time column",
            w[0],
            w[w.len() - 1],
            bins[0]
        ));
    }
    Ok((t.iter().map(|&x| (x - origin) as f32).collect(), origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csvio::parse_table;

    fn table(text: &str) -> Table {
        parse_table(text).unwrap()
    }

    #[test]
    fn reads_time_ids_and_coordinates_by_rest_prefix_and_name() {
        let t = table("time,id,pc1,pc2,other\n0,3,1,2,9\n0.5,-1,3,4,9\n1,nan,5,6,9\n");
        let s = Snapshots::from_table(&t, "time", Some("id"), &CoordinateColumns::Rest).unwrap();
        assert_eq!((s.d, s.len()), (3, 3));
        assert_eq!(s.z, [1., 2., 9., 3., 4., 9., 5., 6., 9.]);
        assert_eq!(s.t, [0., 0.5, 1.]);
        assert_eq!(s.track, [Some(3), None, None]);
        let p = CoordinateColumns::Prefix("pc".into());
        let s = Snapshots::from_table(&t, "time", None, &p).unwrap();
        assert_eq!(
            (s.d, s.names.clone()),
            (2, vec!["pc1".into(), "pc2".into()])
        );
        assert_eq!(s.track, [None, None, None]);
        let n = CoordinateColumns::Named(vec!["pc2".into(), "pc1".into()]);
        let s = Snapshots::from_table(&t, "0", Some("id"), &n).unwrap();
        assert_eq!(s.z, [2., 1., 4., 3., 6., 5.]);
    }

    #[test]
    fn bad_tables_give_messages_that_name_the_problem() {
        let t = table("time,id,pc1\n0,1.5,1\n");
        let e = Snapshots::from_table(&t, "time", Some("id"), &CoordinateColumns::Rest);
        assert!(e.unwrap_err().contains("track id 1.5"));
        let e = Snapshots::from_table(&t, "when", None, &CoordinateColumns::Rest);
        assert!(e.unwrap_err().contains("no column named 'when'"));
        let p = CoordinateColumns::Prefix("x".into());
        let e = Snapshots::from_table(&t, "time", Some("id"), &p);
        assert!(e.unwrap_err().contains("no coordinate columns"));
        let n = CoordinateColumns::Named(vec!["time".into()]);
        let e = Snapshots::from_table(&t, "time", None, &n);
        assert!(e.unwrap_err().contains("both a coordinate and the time"));
        let t = table("time,pc1\ninf,1\n");
        let e = Snapshots::from_table(&t, "time", None, &CoordinateColumns::Rest);
        assert!(e.unwrap_err().contains("row 1: the time is not finite"));
    }

    #[test]
    fn large_timestamps_keep_their_bins_relative_to_the_first() {
        // Unix seconds a minute apart: f32 rounds them to 128 s.
        let unix: Vec<f64> = (0..8).map(|k| 1.7e9 + 60.0 * k as f64).collect();
        let (t, origin) = f32_times(&unix).unwrap();
        assert_eq!(origin, 1.7e9);
        assert_eq!(t, (0..8).map(|k| 60.0 * k as f32).collect::<Vec<_>>());
        // Hours since 1970, a frame every six minutes.
        let hours: Vec<f64> = (0..5).map(|k| 473_000.0 + 0.1 * k as f64).collect();
        let (t, origin) = f32_times(&hours).unwrap();
        assert_eq!(origin, 473_000.0);
        for (k, &v) in t.iter().enumerate() {
            assert!((v as f64 - 0.1 * k as f64).abs() < 1e-6, "{v}");
        }
        // Ordinary times stay as they are.
        let (t, origin) = f32_times(&[0.0, 0.5, 0.5, 1.0]).unwrap();
        assert_eq!((t, origin), (vec![0.0, 0.5, 0.5, 1.0], 0.0));
        // Gaps below f32's resolution even relative to the first time.
        let e = f32_times(&[0.0, 1e3, 1e3 + 1e-5]).unwrap_err();
        assert!(e.contains("too close for 32-bit floats"), "{e}");
        // Through a table: bins, tracks, selection and output in file units.
        let text: String = (0..4)
            .flat_map(|k| (0..2).map(move |id| format!("{},{id},{}\n", 1.7e9 + 60.0 * k as f64, k)))
            .collect();
        let t = table(&format!("t,id,x\n{text}"));
        let s = Snapshots::from_table(&t, "t", Some("id"), &CoordinateColumns::Rest).unwrap();
        assert_eq!(s.grid().times, [0.0, 60.0, 120.0, 180.0]);
        assert_eq!(s.file_times()[3], 1.7e9 + 180.0);
        let (sel, dropped) = s.select_times(&[1.7e9 + 60.0], &[]).unwrap();
        assert_eq!((sel.len(), dropped), (6, vec![1.7e9 + 60.0]));
    }

    #[test]
    fn empty_ids_are_untracked_and_id_columns_are_noticed() {
        let t = table("t,id,x\n0,3,1\n0,,2\n1,3,3\n");
        let s = Snapshots::from_table(&t, "t", Some("id"), &CoordinateColumns::Rest).unwrap();
        assert_eq!(s.track, [Some(3), None, Some(3)]);
        let s = Snapshots::from_table(&t, "t", None, &CoordinateColumns::Rest);
        assert!(s.is_err(), "an empty id cell as a coordinate is refused");
        let t = table("t,ID,x\n0,3,1\n1,3,3\n");
        let s = Snapshots::from_table(&t, "t", None, &CoordinateColumns::Rest).unwrap();
        assert_eq!(s.id_like_coordinates(), ["ID"]);
        let s = Snapshots::from_table(&t, "t", Some("ID"), &CoordinateColumns::Rest).unwrap();
        assert!(s.id_like_coordinates().is_empty());
    }

    #[test]
    fn overflow_scale_coordinates_are_refused_with_a_reason() {
        let t = table("t,x\n0,1e30\n1,2\n");
        let e = Snapshots::from_table(&t, "t", None, &CoordinateColumns::Rest).unwrap_err();
        assert!(
            e.contains("too large for 32-bit floats") && e.contains("'x'"),
            "{e}"
        );
    }

    #[test]
    fn time_selection_drops_or_keeps_whole_bins() {
        let t = table("t,x\n0,1\n0.2,2\n0.2,3\n0.4,4\n0.6,5\n");
        let s = Snapshots::from_table(&t, "t", None, &CoordinateColumns::Rest).unwrap();
        let (sel, dropped) = s.select_times(&[0.2], &[]).unwrap();
        assert_eq!((sel.z.clone(), dropped.len()), (vec![1., 4., 5.], 1));
        assert!((dropped[0] - 0.2).abs() < 1e-7);
        let (sel, dropped) = s.select_times(&[], &[0.6, 0.0]).unwrap();
        assert_eq!((sel.z, dropped.len()), (vec![1., 5.], 2));
        let e = s.select_times(&[0.3], &[]).unwrap_err();
        assert!(
            e.starts_with("--exclude-times: no time of the data matches 0.3"),
            "{e}"
        );
        assert!(
            s.select_times(&[], &[1.0])
                .unwrap_err()
                .starts_with("--times")
        );
        assert_eq!(s.at_time(0.2, "--t0").unwrap().z, [2., 3.]);
    }

    #[test]
    fn write_then_read_round_trips_bit_for_bit() {
        let s = Snapshots {
            d: 2,
            z: vec![0.1, -2.5e-7, 3.0, 1.0 / 3.0],
            t: vec![0.2, 0.4],
            track: vec![Some(7), None],
            names: vec!["a".into(), "b".into()],
            time_origin: 0.0,
        };
        let dir = std::env::temp_dir().join(format!("msde-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snap.csv");
        s.write(&path).unwrap();
        let back = Snapshots::read(&path, "t", Some("id"), &CoordinateColumns::Rest).unwrap();
        assert_eq!(back, s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
