from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from ingest.settings import validate_collection_name
from service.api.deps import RuntimeDep
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


@router.post("", response_model=UploadResponse, responses={400: {"model": ErrorOut}})
def upload(
    runtime: RuntimeDep,
    files: Annotated[list[UploadFile], File(description="One or more documents.")],
    collection: Annotated[str, Form()] = "default",
) -> UploadResponse:
    """Index uploaded files with the same pipeline as the `ingest` command (source = file name)."""
    ingestor = runtime.ingestor(validate_collection_name(collection))
    limit = runtime.settings.max_file_bytes
    outcomes = []
    for upload_file in files:
        source = safe_source(upload_file.filename)
        data = upload_file.file.read(limit + 1)
        if len(data) > limit:
            reason = f"file is over the {runtime.settings.max_file_mb:g} MB limit (RAG_MAX_FILE_MB)"
            outcomes.append(UploadOutcome(source=source, outcome="skipped", chunks=0, reason=reason))
            continue
        outcomes.append(UploadOutcome.of(ingestor.ingest_bytes(data, source=source, root="upload")))
    return UploadResponse(collection=collection, files=outcomes)


@router.get("", response_model=DocumentList, responses={404: {"model": ErrorOut}})
def list_documents(runtime: RuntimeDep, collection: str = "default") -> DocumentList:
    """The documents indexed in a collection."""
    store = runtime.store(validate_collection_name(collection))
    return DocumentList(collection=collection, documents=[DocumentOut.of(d) for d in store.documents()])


@router.delete("/{document_id}", response_model=Deleted, responses={404: {"model": ErrorOut}})
def delete_document(document_id: str, runtime: RuntimeDep, collection: str = "default") -> Deleted:
    """Delete a document and all its chunks."""
    store = runtime.store(validate_collection_name(collection))
    return Deleted(deleted=DocumentOut.of(store.delete_document(document_id)))
