"""The real-model act: case reports read by a pretrained chat model, two task designs.

`findings` (the default, design (b) of issue 14): the model lists the report's present
findings and hypergeom_d ranks every gene on them, the reward coming from an endpoint
grader (`findings_task`, `ranker_server`). `candidates` (design (c)): the model re-ranks
the non-LLM pipeline's top-K genes (`report_task`).

Per seed: cases from all eligible diseases (split by disease once, `split_seed`: held-out
diseases never train), reports, then the arms on the same held-out cases — untuned
model, SFT, RFT, SFT then RFT, the pipeline (string match + hypergeom_d over every gene
with a phenotype-annotated disease), and the classical ranker on the true HPO ids (an
upper bound). Every arm's per-case ranks are written to `seed<N>/ranks/<arm>.json`;
a stage whose file exists is not run again, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openrft.errors import InvalidInput
from openrft.examples.rare_disease.baseline import HypergeomRanker
from openrft.examples.rare_disease.cases import CaseGenerator, CaseSettings, split_diseases
from openrft.examples.rare_disease.findings_task import (
    LIST_LENGTH,
    READING_WEIGHT,
    findings_messages,
    findings_target,
)
from openrft.examples.rare_disease.hpo_data import HPOData, eligible_diseases
from openrft.examples.rare_disease.matcher import PhenotypeMatcher, TextPipeline, rank_of
from openrft.examples.rare_disease.ranker_server import RankerGraderServer
from openrft.examples.rare_disease.report_task import (
    GRADER,
    reference_answer,
    report_messages,
)
from openrft.examples.rare_disease.reports import ReportWriter, Synonym
from openrft.examples.rare_disease.stats import hits, per_disease

logger = logging.getLogger(__name__)
DEFAULT_MODEL = "smollm2-135m-instruct"
TASKS = ("findings", "candidates")
MODEL_ARMS = ("base", "sft", "rft", "sft_rft")
ARMS = (*MODEL_ARMS, "pipeline", "upper_bound")
KS = (1, 5, None)  # top@1, top@5, top@max


@dataclass(frozen=True)
class ReportActSettings:
    """Sizes and training settings of the `findings` task's full act, chosen on validation
    (docs/rare_disease.md, variants 10-10c, 14 and 18); `TASK_DEFAULTS` has the
    `candidates` task's."""

    model: str = DEFAULT_MODEL
    task: str = "findings"
    train_cases: int = 400
    valid_cases: int = 100
    heldout_cases: int = 600
    candidates: int = 5  # the candidates task: K genes shown, the most a model can list
    valid_fraction: float = 0.1
    heldout_fraction: float = 0.1
    split_seed: int = 0
    max_tokens: int = 64
    eval_batch: int = 32
    lora_rank: int = 16
    sft_epochs: int = 3  # 1 under-trained: validation top@1 74/69/75 -> 81/77/82 % (variant 18)
    sft_learning_rate: float = 2e-4
    rft_steps: int = 100  # RFT from the untuned model
    sft_rft_steps: int = 40  # RFT from the SFT model: flat after 20 (variants 12 and 14)
    rft_batch: int = 4
    rft_group: int = 8
    rft_learning_rate: float = 2e-4
    rft_beta: float = 0.0
    rft_temperature: float = 0.7  # at 1.0 the 135M model samples mostly off-format text
    select_every: int = 20  # keep a checkpoint every k steps; the best on validation wins
    # The findings reward's share for the answer's findings F1 (the rest: the gene's rank),
    # per RFT arm, both chosen on validation: from the SFT model (variant 14) and from the
    # untuned model (variant 21: validation top@1 72 / 66 / 83 % against the rank
    # reward's 67 / 67 / 82 %).
    rft_reading_weight: float = READING_WEIGHT
    sft_rft_reading_weight: float = READING_WEIGHT


# The candidates task's full-act settings (the H100 run of docs/rare_disease.md).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "findings": {},
    "candidates": {"max_tokens": 24, "sft_epochs": 1, "rft_steps": 40, "sft_rft_steps": 40},
}


@dataclass(frozen=True)
class Scoring:
    """How a task's answers are graded: the grader spec training and evaluation use, and
    for the findings task the ranking the server applies, so evaluation reads the rank."""

    grader: dict[str, Any]
    rank_text: Callable[[str], list[str]] | None = None


def list_length(settings: ReportActSettings) -> int:
    """How many genes an arm's ranked list holds: top@max is top@<this>."""
    return LIST_LENGTH if settings.task == "findings" else settings.candidates


def ranker_pipeline(data: HPOData, synonyms: dict[str, list[Synonym]]) -> TextPipeline:
    """String matcher + hypergeom_d over every gene: the non-LLM pipeline (a few seconds)."""
    return TextPipeline(PhenotypeMatcher(data, synonyms),
                        HypergeomRanker(data, all_gene_diseases(data)))


ScoringFor = Callable[[float], Scoring]  # reading weight -> the task's scoring


@contextmanager
def task_scoring(settings: ReportActSettings, pipeline: TextPipeline, seed: int
                 ) -> Iterator[ScoringFor]:
    """The task's scoring for a reading weight (the candidates task has none); for
    `findings` the ranker's endpoint grader server runs on 127.0.0.1 for exactly the
    `with` block."""
    if settings.task == "candidates":
        yield lambda _weight: Scoring(GRADER)
        return

    def rank_text(text: str) -> list[str]:
        return pipeline.rank(text, LIST_LENGTH, seed=seed)

    with RankerGraderServer(rank_text, pipeline.matcher.find) as server:
        yield lambda weight: Scoring(server.grader(weight), rank_text)


@dataclass
class ReportData:
    """The rows one seed's arms share, and the two non-LLM arms' per-case ranks."""

    files: dict[str, Path]  # train / valid / heldout JSONL, grader JSON
    heldout: list[dict[str, Any]]
    ranks: dict[str, list[int | None]]  # pipeline / upper_bound on the held-out rows


def all_gene_diseases(data: HPOData) -> list[str]:
    """Every disease with a causal gene and a phenotype annotation: the ranker's gene space."""
    return sorted(
        d.id for d in data.diseases.values()
        if d.genes and any(data.is_phenotypic_abnormality(t) for t in d.frequencies)
    )


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RowBuilder:
    """Case -> report -> an OpenRFT row of the task (prompt + reference fields), with the
    two non-LLM arms' ranks: the pipeline on the report and the ranker on the true ids."""

    def __init__(self, data: HPOData, synonyms: dict[str, list[Synonym]],
                 pipeline: TextPipeline, settings: ReportActSettings, seed: int):
        self.data = data
        self.task = settings.task
        self.k = list_length(settings)
        self.seed = seed
        self.ranker = pipeline.ranker
        self.matcher = pipeline.matcher
        self.writer = ReportWriter(data.names, synonyms, seed)

    def row(self, case: Any) -> dict[str, Any]:
        report = self.writer.write(case)
        matched = self.matcher.find(report.text)
        ranked = self.ranker.rank(matched, self.k, seed=self.seed)
        truth = self.ranker.rank([t["id"] for t in case.present], self.k, seed=self.seed)
        task_fields: dict[str, Any]
        if self.task == "findings":
            task_fields = {"messages": findings_messages(report.text),
                           "target": findings_target(report)}
        else:
            findings = {g: [self.data.names[t] for t in self.ranker.fitting_terms(g, matched)]
                        for g in ranked}
            task_fields = {"messages": report_messages(report.text, ranked, findings),
                           "candidates": ranked}
        return {
            **task_fields,
            "gene": case.gene,
            "disease_id": case.disease_id,
            "case_id": case.case_id,
            "pipeline_rank": rank_of(case.gene, ranked),
            "upper_bound_rank": rank_of(case.gene, truth),
        }


def prepare_report_data(
    data: HPOData, synonyms: dict[str, list[Synonym]], pipeline: TextPipeline,
    settings: ReportActSettings, seed: int, out: Path,
) -> ReportData:
    """Rows for train, validation and held-out (all cases), from disjoint disease sets.
    The candidates task trains only on cases whose gene is among the candidates (nothing
    to learn otherwise) and writes its python grader to `grader.json`."""
    files = {n: out / f"{n}.jsonl" for n in ("train", "valid", "heldout")}
    if settings.task == "candidates":
        files["grader"] = out / "grader.json"
    if not all(p.exists() for p in files.values()):
        pool = eligible_diseases(data)
        split = split_diseases(pool, settings.valid_fraction, settings.heldout_fraction,
                               settings.split_seed)
        generator = CaseGenerator(data, pool, seed, CaseSettings(absent_probability=1.0))
        builder = RowBuilder(data, synonyms, pipeline, settings, seed)
        keep_all = settings.task == "findings"
        train: list[dict[str, Any]] = []
        while len(train) < settings.train_cases:
            for case in generator.generate(list(split.train), settings.train_cases,
                                           f"train-s{seed}-{len(train)}"):
                row = builder.row(case)
                if ((keep_all or row["pipeline_rank"] is not None)
                        and len(train) < settings.train_cases):
                    train.append(row)
        valid = [builder.row(c) for c in generator.generate(
            list(split.valid), settings.valid_cases, f"valid-s{seed}")]
        heldout = [builder.row(c) for c in generator.generate(
            list(split.heldout), settings.heldout_cases, f"heldout-s{seed}")]
        for name, rows in (("train", train), ("valid", valid), ("heldout", heldout)):
            _write_jsonl(files[name], rows)
        if "grader" in files:
            files["grader"].write_text(json.dumps(GRADER, indent=2) + "\n")
    heldout = _read_jsonl(files["heldout"])
    written = "findings" if "target" in heldout[0] else "candidates"
    if written != settings.task:
        raise InvalidInput(str(out), f"holds rows of the {written} task, not the "
                           f"{settings.task} task; choose another --out")
    ranks = {
        "pipeline": [r["pipeline_rank"] for r in heldout],
        "upper_bound": [r["upper_bound_rank"] for r in heldout],
    }
    return ReportData(files, heldout, ranks)


def sft_rows(train_file: Path) -> list[dict[str, Any]]:
    """Training rows with the reference answer: the findings task's `target` (the present
    findings' words), else the true gene then the other candidates."""
    rows = []
    for row in _read_jsonl(train_file):
        answer = row["target"] if "target" in row else reference_answer(row["gene"],
                                                                          row["candidates"])
        rows.append({"messages": row["messages"] + [{"role": "assistant", "content": answer}]})
    return rows


@dataclass
class Graded:
    """One model's greedy answers on a rows file, graded."""

    ranks: list[int | None]  # the true gene's rank per row (None: not in the list)
    mean_reward: float
    answers: list[str]


def evaluate_ranks(model: str | Path, rows_file: Path, settings: ReportActSettings,
                   scoring: Scoring, progress: bool = True) -> Graded:
    """Greedy answers, graded with the task's scoring."""
    from openrft.eval.evaluate import evaluate
    from openrft.rollout.engine import GenerationParams

    params = GenerationParams(max_tokens=settings.max_tokens, temperature=0.0)
    report = evaluate(str(model), rows_file, scoring.grader, params=params,
                      batch_size=settings.eval_batch, progress=progress)
    answers = [row.samples[0].output_text for row in report.rows]
    if scoring.rank_text is None:  # the python grader reports the rank itself
        ranks = [row.samples[0].rank for row in report.rows]
    else:
        genes = [item["gene"] for item in _read_jsonl(rows_file)]
        ranks = [rank_of(gene, scoring.rank_text(answer))
                 for gene, answer in zip(genes, answers, strict=True)]
    return Graded(ranks, report.mean_reward, answers)


def run_sft(model: str | Path, train_file: Path, settings: ReportActSettings, seed: int,
            out: Path, threads: int | None) -> Path:
    from openrft.models.load import LoraSettings
    from openrft.sft.trainer import train_supervised

    return train_supervised(
        model, sft_rows(train_file), out, epochs=settings.sft_epochs,
        learning_rate=settings.sft_learning_rate, batch_size=8, max_length=512, seed=seed,
        threads=threads, lora=LoraSettings(rank=settings.lora_rank, alpha=2 * settings.lora_rank),
    )


def run_rft(model: str | Path, files: dict[str, Path], settings: ReportActSettings, seed: int,
            out: Path, scoring: Scoring, steps: int, reporter: Any = None) -> Path:
    """`steps` of GRPO with LoRA; the kept checkpoint with the best greedy validation
    reward wins. An arm stopped part-way (killed, out of memory) continues from its newest
    checkpoint."""
    from openrft.rl.config import RFTConfig
    from openrft.rl.trainer import train

    every = settings.select_every
    config = RFTConfig.model_validate({
        "model": str(model),
        "training_file": str(files["train"]),
        "validation_file": str(files["valid"]),
        "grader": scoring.grader,
        "seed": seed,
        "output_dir": str(out),
        "hyperparameters": {"n_epochs": 50, "batch_size": settings.rft_batch,
                            "eval_interval": steps, "eval_samples": 8},
        "expert": {
            "group_size": settings.rft_group, "beta": settings.rft_beta, "finetune": "lora",
            "lora_rank": settings.lora_rank, "lora_alpha": 2 * settings.lora_rank,
            "base_learning_rate": settings.rft_learning_rate,
            "max_tokens": settings.max_tokens, "temperature": settings.rft_temperature,
            "max_steps": steps, "keep_samples": 4,
            "save_every": every, "keep_checkpoints": steps // every + 1,
        },
    })
    result = train(config, reporter=reporter, resume=True)
    if result.final_model_dir is None:
        raise RuntimeError(f"RFT run in {out} stopped before finishing")
    return select_checkpoint(out, files["valid"], settings, scoring)


def select_checkpoint(run: Path, valid_file: Path, settings: ReportActSettings,
                      scoring: Scoring) -> Path:
    """Early stopping on validation: best mean reward (ties: earlier step); copied to
    `run/selected`, every score in `run/selection.json`."""
    from openrft.checkpoint import checkpoint_steps, export_model

    scored = []
    for step in checkpoint_steps(run / "checkpoints"):
        graded = evaluate_ranks(run / "checkpoints" / f"step-{step}", valid_file, settings,
                                scoring, progress=False)
        scored.append({"step": step, "valid_reward": graded.mean_reward,
                       "valid_top@1": float(hits(graded.ranks, 1).mean())})
    if not scored:
        raise RuntimeError(f"no checkpoints to select from in {run}")
    best = max(scored, key=lambda r: (r["valid_reward"], -r["step"]))
    selected = export_model(run / "checkpoints" / f"step-{best['step']}", run / "selected")
    (run / "selection.json").write_text(
        json.dumps({"selected_step": best["step"], "checkpoints": scored}, indent=1) + "\n")
    return selected


def metrics_of(ranks: list[int | None]) -> dict[str, float]:
    return {("top@max" if k is None else f"top@{k}"): float(hits(ranks, k).mean()) for k in KS}


def disease_breakdown(heldout: list[dict[str, Any]], ranks: dict[str, list[int | None]]
                      ) -> dict[str, dict[str, float]]:
    """Held-out top@1 per disease and arm."""
    diseases = [r["disease_id"] for r in heldout]
    return {arm: per_disease(diseases, hits(r, 1)) for arm, r in ranks.items()}


def save_ranks(path: Path, ranks: list[int | None], extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ranks": ranks, **extra}) + "\n")


def settings_dict(settings: ReportActSettings) -> dict[str, Any]:
    return asdict(settings)
