"""Which models a request may name, and what each name loads: the service's only door.

A job's or chat's `model` resolves, after the server's aliases, through exactly three
places: the project's own `ft:` models (and checkpoints), the model catalog and models
directory (by name), and the admin's model roots (`--model-root DIR`: a name relative to
a root, or an absolute path inside one). Anything else (a hub id, `/etc`, `""`, `..`, a
symlink out of a root, another project's weights by path) is refused at once with
`model_not_found`, naming the model as the client sent it and listing what is available;
no server path is ever part of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from openrft.models import catalog
from openrft.service.errors import APIError
from openrft.service.settings import ServiceSettings
from openrft.service.store import queries
from openrft.service.store.models import Job

MAX_LISTED = 20  # names shown in a model_not_found message
ROOT_DEPTH = 2  # a root holds models as <name>/ or <org>/<name>/, like hub ids


@dataclass(frozen=True)
class ResolvedModel:
    """`requested`: the client's name; `name`: the model that actually loads (after
    aliases); `load_as`: what `load_model` receives (a catalog name or a directory)."""

    requested: str
    name: str
    load_as: str


def resolve_model(session: Session, settings: ServiceSettings, project_id: str,
                  requested: str) -> ResolvedModel:
    """Resolve a request's `model` or raise a 400 `model_not_found` APIError."""
    target = settings.model_aliases.get(requested, requested)
    if target.startswith("ft:"):
        model = queries.get_fine_tuned_model(session, project_id, target)
        checkpoint = None if model else queries.get_checkpoint_model(session, project_id, target)
        found = model or checkpoint
        if found is not None:
            return ResolvedModel(requested, target, found.path)
        raise model_not_found(session, settings, project_id, requested)
    if target in catalog.CATALOG:  # pulled on first use (the worker or chat loads it)
        return ResolvedModel(requested, target, target)
    local = catalog.pulled_path(target)
    if local is not None:
        return ResolvedModel(requested, target, str(local))
    in_root = root_model_path(settings.model_roots, target)
    if in_root is not None:
        return ResolvedModel(requested, target, str(in_root))
    raise model_not_found(session, settings, project_id, requested)


def trained_model_name(job: Job) -> str:
    """The model a job actually trains (what its events and `ft:` name record): the `ft:`
    model, else the catalog name or the model directory's name, after aliases."""
    if job.model.startswith("ft:"):
        return job.model
    if job.model_path in catalog.CATALOG:
        return job.model_path
    return Path(job.model_path).name or job.model_path


def root_model_path(roots: tuple[Path, ...], name: str) -> Path | None:
    """The model directory `name` names inside one of `roots`, or None.

    A relative name must be plain components (no empty, `.` or `..` part); an absolute
    path must lie inside a root. Either way the path is resolved (symlinks followed) and
    must still be inside that root and be a model directory.
    """
    if not name or "\\" in name or "\x00" in name:
        return None
    path = Path(name)
    if path.is_absolute():
        candidates = [(root, path) for root in roots]
    else:
        if any(part in ("", ".", "..") for part in name.split("/")):
            return None
        candidates = [(root, root / name) for root in roots]
    for root, candidate in candidates:
        resolved = candidate.resolve()
        if resolved.is_relative_to(root) and resolved != root and catalog.is_model_dir(resolved):
            return resolved
    return None


def server_models(settings: ServiceSettings) -> list[str]:
    """Every name any project may use: aliases, catalog, models directory, roots."""
    names = list(settings.model_aliases) + sorted(catalog.CATALOG) + catalog.local_names()
    for root in settings.model_roots:
        names += _root_model_names(root)
    return list(dict.fromkeys(names))


def _root_model_names(root: Path) -> list[str]:
    found: list[str] = []
    level = [root]
    for _ in range(ROOT_DEPTH):
        children = [c for d in level for c in sorted(d.iterdir())
                    if c.is_dir() and not c.name.startswith(".")]
        found += [c.relative_to(root).as_posix() for c in children
                  if catalog.is_model_dir(c) and c.resolve().is_relative_to(root)]
        level = [c for c in children if not catalog.is_model_dir(c)]
    return found


def model_not_found(session: Session, settings: ServiceSettings, project_id: str,
                    requested: str) -> APIError:
    tuned = [m.id for m in queries.list_fine_tuned_models(session, project_id)]
    names = server_models(settings) + tuned
    shown = ", ".join(names[:MAX_LISTED]) + (", ..." if len(names) > MAX_LISTED else "")
    return APIError(400, f"The model '{requested}' does not exist or is not available on "
                         f"this server; available models: {shown or 'none'}",
                    param="model", code="model_not_found")


def check_aliases(settings: ServiceSettings) -> None:
    """Boot-time check: every alias targets a catalog, models-directory or root model."""
    for alias, target in settings.model_aliases.items():
        if not (target in catalog.CATALOG or catalog.pulled_path(target) is not None
                or root_model_path(settings.model_roots, target) is not None):
            known = ", ".join(sorted(catalog.CATALOG))
            raise ValueError(f"model alias {alias!r} -> {target!r}: no such catalog, "
                             f"models-directory or model-root model (catalog: {known})")
