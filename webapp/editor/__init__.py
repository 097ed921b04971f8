"""A metadata form editor for dcmqi's SEG, Parametric Map and TID 1500 SR JSON (Panel + param).

The form is generated from qidicom's JSON Schemas (``qidicom.metadata.load_schema``): plain
fields get a control by type (text with its length limit, integer, fixed choices), a label
marked ``*`` when required and the schema's description as help. Coded concepts get a picker
searchable by meaning or code value over the bundled PS3.16 code lists (``qidicom.codes``),
with the three code fields editable for a custom code; colours a colour picker writing
``recommendedDisplayRGBValue``; lists of groups (segments, measurement groups, measurements,
qualitative evaluations, modifiers) a master-detail list with add, remove and reorder.
Every problem from ``qidicom.metadata.validate`` (plus "SegmentAlgorithmName is required
unless MANUAL") shows under its field and in a list with its JSON path; the JSON text stays
beside the form, with Download, Copy and Apply text. It runs in CPython and under Pyodide.

Interface::

    from editor import MetadataEditor        # with webapp/ on sys.path

    editor = MetadataEditor("seg")            # "seg" | "pm" | "sr"; document=None: an empty one
    editor.panel()                            # the Panel layout (built once)
    editor.from_label_values({1: 5230, 2: 811})   # one segment per label value (-> voxel count)
    editor.load_json(text)                    # a dcmqi JSON, kept exactly as written
    editor.document, editor.problems, editor.valid   # params: watch them (document is triggered)

``MetadataEditor(kind, document=None, context=None)``:

- ``document``: the dict to edit (kept as the same object; edits change it in place and
  trigger the ``document`` param). ``load_json`` replaces it; a bad text leaves it and sets
  ``load_error``. ``new_document()`` starts again; ``text_of()`` is the downloaded text.
- ``from_label_values(values, file_names=None)``: ``values`` maps label value -> voxel count
  (a list of such dicts for several label-map files, with ``segmentAttributesFileMapping``
  from ``file_names``); each segment gets a distinct default colour, the schema's defaults,
  and its voxel count is shown in the segment list.
- ``context`` (also ``set_context(context)``), all keys optional, for the SR pickers::

      {"segments": [{"SegmentNumber": 1, "SegmentLabel": "Liver", "SOPInstanceUID": "1.2...",
                     "SourceSeriesInstanceUID": "1.2...", "file": "seg.dcm",
                     "SegmentedPropertyTypeCodeSequence": {...}, "AnatomicRegionSequence": {...}}],
       "series": [{"SeriesInstanceUID": "1.2...", "SeriesDescription": "CT", "files": ["ct-001.dcm"]}],
       "files": ["seg.dcm", "ct-001.dcm", ...]}

  ``segments`` offers ReferencedSegment (choosing one fills segmentationSOPInstanceUID,
  SourceSeriesForImageSegmentation and, if unset, Finding/FindingSite); ``series`` offers
  SourceSeriesForImageSegmentation; ``files`` offers imageLibrary and compositeContext.
- Params: ``document`` (dict), ``problems`` (list of ``"<JSON path>: <message>"``),
  ``valid`` (bool), ``load_error`` (str), ``last_validation_ms`` (float).
- ``write(path, value)`` / ``edit(change)``: programmatic edits that revalidate like the form.
"""

from .editor import MetadataEditor

__all__ = ["MetadataEditor"]
