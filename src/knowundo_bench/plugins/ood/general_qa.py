"""OOD retain source ``general_qa``: general-task questions with their correct answers,
as ``Question: ...\\nAnswer: ...`` passages, from JSON Lines files in the schemas of
lm-evaluation-harness's hub datasets (ARC, MMLU, Social IQa, TruthfulQA multiple choice).

Files are recognised by name prefix (``arc_``, ``mmlu_``, ``social_iqa_``,
``truthfulqa_``); the directory ``../shared/data/general`` holds such samples.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, DirectoryPath, Field, model_validator

from knowundo_bench.api import (
    InputError,
    OodSourceInfo,
    Params,
    RetainText,
    hookimpl,
    read_json_lines,
)


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def question_text(self) -> str:
        raise NotImplementedError

    def answer_text(self) -> str:
        raise NotImplementedError

    def passage(self) -> str:
        return f"Question: {self.question_text()}\nAnswer: {self.answer_text()}"


class ArcChoices(BaseModel):
    text: list[str]
    label: list[str]


class ArcRow(_Row):
    question: str = Field(min_length=1)
    choices: ArcChoices
    answerKey: str

    @model_validator(mode="after")
    def _key_is_a_label(self) -> ArcRow:
        if self.answerKey not in self.choices.label:
            raise ValueError(f"answerKey {self.answerKey!r} is not one of the choice labels")
        return self

    def question_text(self) -> str:
        return self.question

    def answer_text(self) -> str:
        return self.choices.text[self.choices.label.index(self.answerKey)]


class MmluRow(_Row):
    question: str = Field(min_length=1)
    choices: list[str] = Field(min_length=2)
    answer: int = Field(ge=0)

    @model_validator(mode="after")
    def _answer_in_range(self) -> MmluRow:
        if self.answer >= len(self.choices):
            raise ValueError(f"answer {self.answer} is out of range for {len(self.choices)} choices")
        return self

    def question_text(self) -> str:
        return self.question

    def answer_text(self) -> str:
        return self.choices[self.answer]


class SocialIqaRow(_Row):
    context: str
    question: str = Field(min_length=1)
    answerA: str
    answerB: str
    answerC: str
    label: str = Field(pattern="^[123]$")

    def question_text(self) -> str:
        return f"{self.context} {self.question}"

    def answer_text(self) -> str:
        return (self.answerA, self.answerB, self.answerC)[int(self.label) - 1]


class TruthfulTargets(BaseModel):
    choices: list[str] = Field(min_length=1)
    labels: list[int]


class TruthfulQaRow(_Row):
    question: str = Field(min_length=1)
    mc1_targets: TruthfulTargets

    @model_validator(mode="after")
    def _one_true_answer(self) -> TruthfulQaRow:
        if 1 not in self.mc1_targets.labels:
            raise ValueError("mc1_targets.labels marks no true answer")
        return self

    def question_text(self) -> str:
        return self.question

    def answer_text(self) -> str:
        return self.mc1_targets.choices[self.mc1_targets.labels.index(1)]


SCHEMAS: dict[str, type[_Row]] = {
    "arc_": ArcRow,
    "mmlu_": MmluRow,
    "social_iqa_": SocialIqaRow,
    "truthfulqa_": TruthfulQaRow,
}


class GeneralQaParams(Params):
    path: DirectoryPath = Field(
        description="directory of arc_*/mmlu_*/social_iqa_*/truthfulqa_* .jsonl files (relative: to the spec's folder)"
    )


def load(params: GeneralQaParams) -> list[RetainText]:
    if not params.path.is_dir():
        raise InputError("not a directory", source=str(params.path))
    passages: list[RetainText] = []
    for file in sorted(params.path.glob("*.jsonl")):
        schema = next((model for prefix, model in SCHEMAS.items() if file.name.startswith(prefix)), None)
        if schema is not None:
            passages += [RetainText(text=row.passage()) for row in read_json_lines(file, schema)]
    if not passages:
        raise InputError(f"no .jsonl file named {'*, '.join(SCHEMAS)}*", source=str(params.path))
    return passages


@hookimpl
def register_ood_sources() -> list[OodSourceInfo]:
    return [
        OodSourceInfo(
            name="general_qa",
            description="General-task QA (ARC/MMLU/SIQA/TruthfulQA JSONL) as text.",
            params=GeneralQaParams,
            load=load,
        )
    ]
