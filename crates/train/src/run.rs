//! One training run in a folder: the skeleton every racm3 trainer shares (minGPT's trainer,
//! which "has nothing to do with GPT specifically").
//!
//! A [`Run`] opens a folder fresh or resumes the checkpoint there, owns the variables
//! being trained with one AdamW each (a VQGAN trains a model and a discriminator), the
//! step count, the loss log and the checkpoints. Each model's trainer keeps only its own
//! step: the forward pass, the loss and which variables it updates.
//!
//! The folder holds `config.json` and `model.safetensors` (the latest weights, ready to
//! load), `loss.csv` and `loss.png`, and `train/step-N/` with every variable set, its
//! optimizer moments and `state.json` (the step and the run's settings).

use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_nn::VarMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoints, WEIGHTS_FILE, load_vars, save_vars};
use crate::error::{Error, Result};
use crate::log::LossLog;
use crate::optim::{AdamW, AdamWConfig};

/// The name of the first variable set a run trains: its weights are the run's
/// `model.safetensors`, and its moments the checkpoint's `optimizer.safetensors`.
pub const MODEL: &str = "model";

/// What a checkpoint's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State<S> {
    step: usize,
    config: S,
}

/// A set of variables and the optimizer that updates them.
struct Trained {
    name: &'static str,
    vars: VarMap,
    optimizer: AdamW,
}

impl Trained {
    fn weights_file(&self) -> String {
        format!("{}.safetensors", self.name)
    }

    fn optimizer_file(&self) -> String {
        if self.name == MODEL {
            crate::OPTIMIZER_FILE.to_owned()
        } else {
            format!("{}_optimizer.safetensors", self.name)
        }
    }
}

/// A training run in a folder, with settings `S` stored in every checkpoint.
pub struct Run<S> {
    dir: PathBuf,
    settings: S,
    step: usize,
    log: LossLog,
    resume_from: Option<PathBuf>,
    trained: Vec<Trained>,
}

impl<S: Serialize + DeserializeOwned + Clone> Run<S> {
    /// Opens the run in `dir`: fresh with `settings`, or resumed from its latest checkpoint,
    /// in which case `reconcile(stored, asked)` decides the settings (the trainers keep the
    /// stored ones but the total step count, so a run can be trained longer). A folder
    /// holding a trained model and no checkpoint is refused: its first save would replace
    /// that model. `columns` name the loss log's values.
    pub fn open(
        dir: &Path,
        settings: S,
        columns: &[&str],
        reconcile: impl FnOnce(S, S) -> S,
    ) -> Result<Self> {
        let latest: Option<(PathBuf, State<S>)> = Checkpoints::new(dir).resume_point()?;
        let (settings, step, resume_from) = match latest {
            Some((checkpoint, state)) => (
                reconcile(state.config, settings),
                state.step,
                Some(checkpoint),
            ),
            None => (settings, 0, None),
        };
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let log = LossLog::open(&dir.join("loss.csv"), columns, step)?;
        Ok(Self {
            dir: dir.to_owned(),
            settings,
            step,
            log,
            resume_from,
            trained: Vec::new(),
        })
    }

    /// Trains `vars` with AdamW under `adam`, restoring both from the checkpoint being
    /// resumed. The first set added is [`MODEL`]; `name` names its files in a checkpoint.
    /// Returns the set's index for [`Run::update`].
    pub fn train_vars(
        &mut self,
        name: &'static str,
        vars: &VarMap,
        adam: AdamWConfig,
    ) -> Result<usize> {
        if self.trained.is_empty() != (name == MODEL) {
            return Err(Error::State {
                path: self.dir.clone(),
                message: format!("the first variables a run trains are '{MODEL}', not '{name}'"),
            });
        }
        let mut trained = Trained {
            name,
            vars: vars.clone(),
            optimizer: AdamW::new(vars, adam)?,
        };
        if let Some(checkpoint) = &self.resume_from {
            load_vars(vars, &checkpoint.join(trained.weights_file()))?;
            trained
                .optimizer
                .load(&checkpoint.join(trained.optimizer_file()))?;
        }
        self.trained.push(trained);
        Ok(self.trained.len() - 1)
    }

    /// The run's settings.
    pub fn settings(&self) -> &S {
        &self.settings
    }

    /// Steps done so far (more than 0 for a resumed run).
    pub fn step(&self) -> usize {
        self.step
    }

    /// True when the run continues a checkpoint rather than starting afresh.
    pub fn is_resumed(&self) -> bool {
        self.resume_from.is_some()
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The variables of set `index`.
    pub fn vars(&self, index: usize) -> &VarMap {
        &self.trained[index].vars
    }

    /// The variable `name` of set `index`, if the set has one by that name.
    pub fn var(&self, index: usize, name: &str) -> Result<Option<candle_core::Var>> {
        let data = self.trained[index]
            .vars
            .data()
            .lock()
            .map_err(|_| Error::Poisoned)?;
        Ok(data.get(name).cloned())
    }

    /// One optimizer step of set `index` at learning rate `lr`.
    pub fn update(&mut self, index: usize, grads: &GradStore, lr: f64) -> Result<()> {
        self.trained[index].optimizer.step(grads, lr)
    }

    /// Counts a step as done.
    pub fn advance(&mut self) {
        self.step += 1;
    }

    /// Logs `values` (one per column) at the current step.
    pub fn log(&mut self, values: &[f64]) -> Result<()> {
        self.log.push(self.step, values)
    }

    /// True when the step just done should end in a checkpoint: every `every` steps, and
    /// at `stop`, where this stretch of training ends.
    pub fn checkpoint_due(&self, every: usize, stop: usize) -> bool {
        self.step.is_multiple_of(every.max(1)) || self.step == stop
    }

    /// Writes a checkpoint, then refreshes the ready-to-use `model.safetensors`,
    /// `config.json` (from `model_config`, what rebuilds the model) and `loss.png`.
    pub fn save(&self, model_config: &impl Serialize) -> Result<()> {
        let state = State {
            step: self.step,
            config: self.settings.clone(),
        };
        Checkpoints::new(&self.dir).save(self.step, &state, |checkpoint| {
            for trained in &self.trained {
                save_vars(&trained.vars, &checkpoint.join(trained.weights_file()))?;
                trained
                    .optimizer
                    .save(&checkpoint.join(trained.optimizer_file()))?;
            }
            Ok(())
        })?;
        if let Some(model) = self.trained.first() {
            save_vars(&model.vars, &self.dir.join(WEIGHTS_FILE))?;
        }
        let config_path = self.dir.join("config.json");
        let config_json = serde_json::to_vec_pretty(model_config).map_err(|err| Error::State {
            path: config_path.clone(),
            message: err.to_string(),
        })?;
        racm3_data::write_atomic(&config_path, &config_json)?;
        self.log.plot(&self.dir.join("loss.png"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    fn settings_of(run: &Run<(usize, String)>) -> (usize, String) {
        run.settings().clone()
    }

    /// A run with one variable `w`, trained toward 3 by `steps` steps of (w - 3)².
    fn train(dir: &Path, steps: usize) -> Run<(usize, String)> {
        let asked = (steps, "asked".to_owned());
        let mut run =
            Run::open(dir, asked, &["loss"], |stored, asked| (asked.0, stored.1)).unwrap();
        let vars = VarMap::new();
        let w = vars
            .get(
                1,
                "w",
                candle_nn::Init::Const(0.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        let model = run
            .train_vars(MODEL, &vars, AdamWConfig::default())
            .unwrap();
        while run.step() < steps {
            let loss = (&w - 3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            run.update(model, &loss.backward().unwrap(), 0.1).unwrap();
            run.advance();
            run.log(&[f64::from(loss.to_scalar::<f32>().unwrap())])
                .unwrap();
        }
        run.save(&"config").unwrap();
        run
    }

    fn weight(dir: &Path) -> f32 {
        let tensors = candle_core::safetensors::load(dir.join(WEIGHTS_FILE), &Device::Cpu).unwrap();
        let w: &Tensor = &tensors["w"];
        w.to_vec1::<f32>().unwrap()[0]
    }

    // Four steps, then four more after reopening, end where eight steps in one go end: the
    // weights and the optimizer's moments are restored, the stored settings kept but the
    // step count, and the log continues.
    #[test]
    fn a_resumed_run_continues_exactly() {
        let (split, whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        train(split.path(), 4);
        let resumed = train(split.path(), 8);
        assert!(resumed.is_resumed());
        assert_eq!(settings_of(&resumed), (8, "asked".to_owned()));
        train(whole.path(), 8);
        assert_eq!(weight(split.path()), weight(whole.path()));
        assert!(weight(whole.path()) > 0.5, "{}", weight(whole.path()));
        let log = std::fs::read_to_string(split.path().join("loss.csv")).unwrap();
        assert_eq!(log.lines().count(), 1 + 8, "{log}");
        let config = std::fs::read_to_string(split.path().join("config.json")).unwrap();
        assert_eq!(config, "\"config\"");
    }

    // The model comes first: a discriminator before it is refused, and a second set after
    // it gets its own files in the checkpoint.
    #[test]
    fn the_model_is_the_first_set_and_others_have_their_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = Run::open(dir.path(), 1usize, &["loss"], |stored, _| stored).unwrap();
        let (model, other) = (VarMap::new(), VarMap::new());
        for vars in [&model, &other] {
            vars.get(
                2,
                "x",
                candle_nn::Init::Const(1.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        }
        let refused = run.train_vars("discriminator", &other, AdamWConfig::default());
        assert!(refused.unwrap_err().to_string().contains("'model'"));
        run.train_vars(MODEL, &model, AdamWConfig::default())
            .unwrap();
        run.train_vars("discriminator", &other, AdamWConfig::default())
            .unwrap();
        run.advance();
        run.save(&1).unwrap();
        let checkpoint = dir.path().join("train/step-00000001");
        for file in [
            "model.safetensors",
            "optimizer.safetensors",
            "discriminator.safetensors",
            "discriminator_optimizer.safetensors",
            "state.json",
        ] {
            assert!(checkpoint.join(file).exists(), "{file}");
        }
    }
}
