//! `sidelight surrogate fit` and `sidelight surrogate explain`: the explanation engine
//! (`sidelight-explain`) over CSV files, for data scientists working offline.
//!
//! Exit statuses follow sysexits: 64 bad arguments, 65 bad data (CSV or model file), 66 an
//! input that cannot be opened, 73 an output that cannot be written, 74 a read error.

mod explain;
mod fit;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Args)]
pub(crate) struct SurrogateArgs {
    #[command(subcommand)]
    command: SurrogateCommand,
}

#[derive(Subcommand)]
enum SurrogateCommand {
    /// Fit a surrogate (gradient-boosted trees) to rows and the model's outputs in a CSV
    /// file, print its fidelity on held-out rows, and save it as JSON.
    Fit(FitArgs),
    /// Explain every row of a CSV file with a saved surrogate: one row of SHAP values per
    /// input row.
    Explain(ExplainArgs),
}

#[derive(Args)]
pub(crate) struct FitArgs {
    /// CSV file with a header line: one column per feature plus the target column.
    /// Numeric and text columns are told apart from their values; an empty cell is a
    /// missing value.
    #[arg(long, value_name = "CSV")]
    data: PathBuf,
    /// The column holding the model's output for each row (numeric).
    #[arg(long, value_name = "COLUMN")]
    target: String,
    /// Where to write the surrogate (JSON, sidelight-explain format version 1).
    #[arg(long, value_name = "JSON")]
    out: PathBuf,
    /// What the target is. Without this flag, a target whose values all lie in [0, 1] is
    /// taken as a probability, anything else as a regression score.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Treat these columns as categorical even if most of their values are numbers
    /// (repeat the flag or separate names with commas).
    #[arg(long, value_name = "COLUMN", value_delimiter = ',')]
    categorical: Vec<String>,
    /// Most trees to grow (early stopping on 10% of the training rows may keep fewer).
    #[arg(long, default_value_t = 100, value_name = "N")]
    trees: usize,
    /// Deepest a tree may grow.
    #[arg(long, default_value_t = 6, value_name = "D")]
    depth: usize,
    /// Shrinkage applied to each tree.
    #[arg(long, default_value_t = 0.1, value_name = "R")]
    learning_rate: f64,
    /// Seed of the held-out split and of the boosting; the same seed gives the same
    /// surrogate.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// Share of the rows held out to measure fidelity, in [0, 1); 0 trains on every row
    /// and measures nothing.
    #[arg(long, default_value_t = 0.2, value_name = "F", value_parser = parse_fraction)]
    holdout: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// The target is a score; the trees fit it as it is.
    Regression,
    /// The target is a probability in [0, 1]; the trees fit its logit.
    Probability,
}

#[derive(Args)]
pub(crate) struct ExplainArgs {
    /// The surrogate written by `sidelight surrogate fit`.
    #[arg(long, value_name = "JSON")]
    model: PathBuf,
    /// CSV file of rows to explain, with a header naming at least every feature the
    /// model reads; other columns (the target, ids) are ignored.
    #[arg(long, value_name = "CSV")]
    data: PathBuf,
    /// Where to write the attributions (`-` for standard output). Columns: base_value,
    /// prediction, then one per feature named after it. For a probability surrogate
    /// they are in raw (logit) space, where SHAP values add up:
    /// base_value + sum of the feature columns = prediction = logit of the probability.
    #[arg(long, value_name = "CSV")]
    out: PathBuf,
    /// Which SHAP values to compute.
    #[arg(long, value_enum, default_value_t = Method::Tree)]
    method: Method,
    /// Rows that stand for "feature unknown" in interventional and kernel SHAP. Without
    /// it, the first --background-rows rows of --data are used.
    #[arg(long, value_name = "CSV")]
    background: Option<PathBuf>,
    /// Most background rows to use (the first ones of the file); cost grows linearly with
    /// this.
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    background_rows: u32,
    /// KernelSHAP: most coalitions to evaluate per row (each costs one surrogate call per
    /// background row); with 12 features or fewer every coalition is enumerated.
    #[arg(long, default_value_t = 2048, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    coalitions: u32,
    /// KernelSHAP: seed of the coalition sampler.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// For a multi-class surrogate, the class to explain.
    #[arg(long, value_name = "LABEL")]
    class: Option<String>,
    /// Threads to split the rows across (default: the available parallelism).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// Path-dependent TreeSHAP (Fast TreeSHAP v2): exact, fast, needs no background.
    Tree,
    /// Interventional TreeSHAP: exact, against a background sample.
    Interventional,
    /// KernelSHAP: the surrogate as a black box, estimated against a background sample.
    Kernel,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::Tree => "tree",
            Self::Interventional => "interventional",
            Self::Kernel => "kernel",
        }
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("{f} is not in [0, 1)"))
    }
}

pub(crate) fn run(args: SurrogateArgs) -> ExitCode {
    let result = match args.command {
        SurrogateCommand::Fit(args) => fit::run(&args),
        SurrogateCommand::Explain(args) => explain::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("sidelight: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Why a command stopped: a message for the user and the exit status that classifies it.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// The arguments are unusable (EX_USAGE).
    fn usage(message: String) -> Self {
        Self { code: 64, message }
    }

    /// The input data or model file is wrong (EX_DATAERR).
    fn data(message: String) -> Self {
        Self { code: 65, message }
    }

    /// An input file cannot be opened (EX_NOINPUT).
    fn no_input(message: String) -> Self {
        Self { code: 66, message }
    }

    /// An output file cannot be written (EX_CANTCREAT).
    fn cant_create(message: String) -> Self {
        Self { code: 73, message }
    }

    /// Reading failed part-way (EX_IOERR).
    fn io(message: String) -> Self {
        Self { code: 74, message }
    }

    /// A fault of ours, not of the input (EX_SOFTWARE).
    fn internal(message: String) -> Self {
        Self { code: 70, message }
    }
}
