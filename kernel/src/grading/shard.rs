//! Which part of a class one machine grades, for batch array jobs.

/// Which part of a class this machine grades (`--shard I/N`, I from 0), or `auto`: the
/// part a batch system gave this task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The part a batch array task grades, from its environment: Slurm's
    /// `SLURM_ARRAY_TASK_ID` (less `SLURM_ARRAY_TASK_MIN`, so `--array=1-4` works too) of
    /// `SLURM_ARRAY_TASK_COUNT`, or a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` of
    /// `JOB_COMPLETIONS` (which the Job's manifest sets from its `completions`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let number = |name: &str| -> Result<Option<usize>, String> {
            match var(name) {
                None => Ok(None),
                Some(text) => text
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("--shard auto: {name} is `{text}`, not a number")),
            }
        };
        let found = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or(
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; run the job as an array (sbatch --array)",
            )?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            (id.checked_sub(min), count, "SLURM_ARRAY_TASK_ID")
        } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = number("JOB_COMPLETIONS")?.ok_or(
                "--shard auto: JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not; set it in the Job's container env to the Job's `completions`",
            )?;
            (Some(index), count, "JOB_COMPLETION_INDEX")
        } else {
            return Err("--shard auto found neither Slurm's SLURM_ARRAY_TASK_ID nor Kubernetes' JOB_COMPLETION_INDEX; run it as an array task, or give --shard I/N".into());
        };
        match found {
            (Some(index), count, _) if index < count => Ok(Shard { index, count }),
            (_, count, name) => Err(format!(
                "--shard auto: {name} does not name one of {count} parts"
            )),
        }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            return Shard::from_env(|name| std::env::var(name).ok());
        }
        let bad = || {
            format!("--shard takes I/N with 0 <= I < N, or `auto` in a Slurm array or Kubernetes Indexed Job, not `{text}`")
        };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Shard, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Shard::from_env(|name| vars.get(name).cloned())
    }

    #[test]
    fn auto_takes_the_part_from_slurm_or_kubernetes() {
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ];
        assert_eq!(from(&slurm), Ok(Shard { index: 3, count: 4 }));
        let one_based = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(from(&one_based), Ok(Shard { index: 0, count: 4 }));
        let k8s = [("JOB_COMPLETION_INDEX", "2"), ("JOB_COMPLETIONS", "3")];
        assert_eq!(from(&k8s), Ok(Shard { index: 2, count: 3 }));
    }

    #[test]
    fn auto_outside_a_batch_array_says_what_it_looked_for() {
        assert!(from(&[]).unwrap_err().contains("SLURM_ARRAY_TASK_ID"));
        assert!(from(&[("JOB_COMPLETION_INDEX", "0")])
            .unwrap_err()
            .contains("JOB_COMPLETIONS"));
        assert!(from(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4")
        ])
        .unwrap_err()
        .contains("one of 4 parts"));
        assert!("1/0".parse::<Shard>().is_err());
        assert_eq!("1/2".parse::<Shard>(), Ok(Shard { index: 1, count: 2 }));
    }
}
