from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.api.deps import CallerDep, RuntimeDep
from service.api.schemas import Deleted, DocumentList, DocumentOut, ErrorOut, UploadOutcome, UploadResponse
from service.errors import BadRequest

router = APIRouter(prefix="/v1/documents", tags=["documents"])
MAX_NAME = 255


def safe_source(filename: str | None) -> str:
    """An upload's source: its base name, with no folders, control characters or over-long names."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()
    if not name or name in {".", ".."}:
        raise BadRequest(f"unusable file name {filename!r}")
    if len(name) > MAX_NAME:
        raise BadRequest(f"file name is {len(name)} characters, over {MAX_NAME}")
    return name


@router.post(
    "", response_model=UploadResponse, responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}}
)
def upload(
    runtime: RuntimeDep,
    caller: CallerDep,
    files: Annotated[list[UploadFile], File(description="One or more documents.")],
    collection: Annotated[str, Form()] = "default",
) -> UploadResponse:
    """Index uploaded files with the same pipeline as the `ingest` command (source = file name)."""
    # Uploading creates a collection: a limited key may create only those it is limited to.
    ingestor = runtime.ingestor(caller.check(collection))
    limit = runtime.settings.max_file_bytes
    outcomes = []
    # Every name is checked before any file is indexed: a 400 leaves the collection as it was.
    sources = [safe_source(upload_file.filename) for upload_file in files]
    for upload_file, source in zip(files, sources, strict=True):
        data = upload_file.file.read(limit + 1)
        if len(data) > limit:
            reason = f"file is over the {runtime.settings.max_file_mb:g} MB limit (RAG_MAX_FILE_MB)"
            outcomes.append(UploadOutcome(source=source, outcome="skipped", chunks=0, reason=reason))
            continue
        outcomes.append(UploadOutcome.of(ingestor.ingest_bytes(data, source=source, root="upload")))
    runtime.wrote(collection)
    return UploadResponse(collection=collection, files=outcomes)


@router.get("", response_model=DocumentList, responses={404: {"model": ErrorOut}})
def list_documents(runtime: RuntimeDep, caller: CallerDep, collection: str = "default") -> DocumentList:
    """The documents indexed in a collection."""
    store = runtime.store(caller.check(collection))
    return DocumentList(collection=collection, documents=[DocumentOut.of(d) for d in store.documents()])


@router.delete("/{document_id}", response_model=Deleted, responses={404: {"model": ErrorOut}})
def delete_document(
    document_id: str, runtime: RuntimeDep, caller: CallerDep, collection: str = "default"
) -> Deleted:
    """Delete a document and all its chunks."""
    store = runtime.store(caller.check(collection))
    deleted = store.delete_document(document_id)
    runtime.wrote(collection)
    return Deleted(deleted=DocumentOut.of(deleted))
