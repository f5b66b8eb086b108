//! Resumable checkpoints that are never half-written.
//!
//! A checkpoint is a folder `train/step-NNNNNNNN/` under a run's output folder, written in
//! full under a temporary name and then renamed; the file `train/latest` names the newest
//! complete one and is itself replaced atomically. A crash at any point leaves the last
//! complete checkpoint in place and `latest` pointing at it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use candle_nn::VarMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Where the weights of a model live in its folder, and in each checkpoint.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The trainer's own state in a checkpoint (step, settings).
pub const STATE_FILE: &str = "state.json";

/// Saves named tensors as safetensors through a temp file and a rename.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let temp = temp_path(path);
    candle_core::safetensors::save(tensors, &temp).map_err(|source| Error::Tensors {
        path: path.to_owned(),
        source,
    })?;
    // The safetensors writer creates private files; a saved model is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644))
            .map_err(Error::io(&temp))?;
    }
    std::fs::rename(&temp, path).map_err(Error::io(path))
}

/// Saves every variable of `vars` under its name, atomically.
pub fn save_vars(vars: &VarMap, path: &Path) -> Result<()> {
    let data = vars.data().lock().map_err(|_| Error::Poisoned)?;
    let tensors = data
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    drop(data);
    save_tensors(&tensors, path)
}

/// Sets every variable of `vars` from a safetensors file. A missing tensor or a wrong shape
/// is an error naming the tensor.
pub fn load_vars(vars: &VarMap, path: &Path) -> Result<()> {
    load_vars_where(vars, path, |_| true)
}

/// As [`load_vars`], for the variables whose names `wanted` accepts; the others keep their
/// values (a part of a model that starts afresh).
pub fn load_vars_where(vars: &VarMap, path: &Path, wanted: impl Fn(&str) -> bool) -> Result<()> {
    let data = vars.data().lock().map_err(|_| Error::Poisoned)?;
    let device = data
        .values()
        .next()
        .map_or(candle_core::Device::Cpu, |var| var.device().clone());
    let tensors =
        candle_core::safetensors::load(path, &device).map_err(|source| Error::Tensors {
            path: path.to_owned(),
            source,
        })?;
    for (name, var) in data.iter().filter(|(name, _)| wanted(name)) {
        var.set(take_tensor(&tensors, path, name, var.dims())?)?;
    }
    Ok(())
}

/// The tensor `name` of a loaded file, checked against the shape the model expects.
pub(crate) fn take_tensor<'a>(
    tensors: &'a HashMap<String, Tensor>,
    path: &Path,
    name: &str,
    expected: &[usize],
) -> Result<&'a Tensor> {
    let tensor = tensors.get(name).ok_or_else(|| Error::MissingTensor {
        path: path.to_owned(),
        name: name.to_owned(),
    })?;
    if tensor.dims() != expected {
        return Err(Error::ShapeMismatch {
            path: path.to_owned(),
            name: name.to_owned(),
            expected: expected.to_vec(),
            got: tensor.dims().to_vec(),
        });
    }
    Ok(tensor)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// The optimizer moments' file in a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// The checkpoints of one training run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    run_dir: PathBuf,
    dir: PathBuf,
}

impl Checkpoints {
    /// The checkpoints kept under `run_dir/train/`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            run_dir: run_dir.to_owned(),
            dir: run_dir.join("train"),
        }
    }

    /// The checkpoint a run in this folder resumes from, or `None` for a fresh run. A fresh
    /// run refuses a folder that already holds a trained model with no checkpoint to resume
    /// (a committed or copied model folder): its first save would replace that model.
    pub fn resume_point<S: DeserializeOwned>(&self) -> Result<Option<(PathBuf, S)>> {
        let latest = self.latest()?;
        let weights = self.run_dir.join(WEIGHTS_FILE);
        if latest.is_none() && weights.exists() {
            return Err(Error::WouldOverwrite { path: weights });
        }
        Ok(latest)
    }

    /// Writes a checkpoint for `step`: `write` fills the folder it is given, then the
    /// trainer state is added, the folder is renamed into place and `latest` updated.
    /// Older checkpoints are removed.
    pub fn save<S: Serialize>(
        &self,
        step: usize,
        state: &S,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir))?;
        let name = format!("step-{step:08}");
        let final_dir = self.dir.join(&name);
        let work = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(Error::io(&work))?;
        }
        std::fs::create_dir_all(&work).map_err(Error::io(&work))?;
        write(&work)?;
        let state_json = serde_json::to_vec_pretty(state).map_err(|err| Error::State {
            path: work.join(STATE_FILE),
            message: err.to_string(),
        })?;
        racm3_data::write_atomic(&work.join(STATE_FILE), &state_json)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(Error::io(&final_dir))?;
        }
        std::fs::rename(&work, &final_dir).map_err(Error::io(&final_dir))?;
        racm3_data::write_atomic(&self.dir.join("latest"), name.as_bytes())?;
        self.prune(&name)?;
        Ok(final_dir)
    }

    /// The newest complete checkpoint and its trainer state, if any.
    pub fn latest<S: DeserializeOwned>(&self) -> Result<Option<(PathBuf, S)>> {
        let pointer = self.dir.join("latest");
        let name = match std::fs::read_to_string(&pointer) {
            Ok(name) => name,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(Error::io(&pointer)(err)),
        };
        let dir = self.dir.join(name.trim());
        let state_path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&state_path).map_err(Error::io(&state_path))?;
        let state = serde_json::from_slice(&bytes).map_err(|err| Error::State {
            path: state_path,
            message: err.to_string(),
        })?;
        Ok(Some((dir, state)))
    }

    fn prune(&self, keep: &str) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(Error::io(&self.dir))?;
        for entry in entries.filter_map(|entry| entry.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("step-") && name != keep {
                std::fs::remove_dir_all(entry.path()).map_err(Error::io(entry.path()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The newest checkpoint wins, older ones are pruned, and a half-written one (a leftover
    // temp folder) is never taken for complete.
    #[test]
    fn latest_is_the_last_complete_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path());
        assert!(checkpoints.latest::<usize>().unwrap().is_none());
        for step in [10usize, 20] {
            checkpoints
                .save(step, &step, |work| {
                    std::fs::write(work.join("x"), step.to_string()).map_err(Error::io(work))
                })
                .unwrap();
        }
        let failed = checkpoints.save(30, &30usize, |work| {
            std::fs::write(work.join("x"), "partial").map_err(Error::io(work))?;
            Err(Error::Poisoned)
        });
        assert!(failed.is_err());
        let (latest, state): (PathBuf, usize) = checkpoints.latest().unwrap().unwrap();
        assert_eq!(state, 20);
        assert_eq!(std::fs::read_to_string(latest.join("x")).unwrap(), "20");
        assert!(!dir.path().join("train/step-00000010").exists());
    }

    // A trained model without checkpoints (as committed) is never replaced by a fresh run;
    // a folder with a run in progress resumes, and an empty one starts.
    #[test]
    fn a_fresh_run_refuses_a_folder_holding_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path());
        assert!(checkpoints.resume_point::<usize>().unwrap().is_none());
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"trained").unwrap();
        let refused = checkpoints.resume_point::<usize>().unwrap_err();
        assert!(matches!(&refused, Error::WouldOverwrite { path } if path.ends_with(WEIGHTS_FILE)));
        assert!(refused.to_string().contains("another folder"), "{refused}");
        checkpoints.save(5, &5usize, |_| Ok(())).unwrap();
        let (_, step): (PathBuf, usize) = checkpoints.resume_point().unwrap().unwrap();
        assert_eq!(step, 5);
    }
}
