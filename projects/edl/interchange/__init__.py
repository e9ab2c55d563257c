"""Timeline interchange: the timeline as a professional editor's file (OTIO, FCPXML, FCP7 XML,
CMX 3600 EDL, AAF), and such a file back as a new version of the timeline.

Export reads the cuts from `projects.edl.cuts` exactly as the render's snapshot does
(`transcript_cuts` then `cut_tracks`): each piece the render plays is one clip of the file, at its
edited time, with its own source in point, so the file's cut list is the render's by construction.
The file is written by OpenTimelineIO's adapters from one OTIO timeline; what a format cannot
carry is removed from that timeline before it is written and listed in the report, never lost
silently. The formats and what each carries are declared once, in `FORMATS`.

How the timeline maps to OTIO:
- a track is a track of its kind; a piece is a clip whose `source_range` starts at the piece's
  in point and lasts its length on the timeline (OTIO's convention: a clip's duration is its
  record duration), with a `LinearTimeWarp` of the clip's speed; the space between pieces is a gap;
- a fade is a dissolve (`Transition`) from or to a gap: black on a video track, silence on an
  audio one;
- volume, text, crop and fit are OTIO effects named `auteur.<type>` whose metadata holds the
  effect as the timeline has it (OTIO files keep them all; FCP7 XML and FCPXML also carry an
  audio clip's volume);
- speed and volume in FCP7 XML, FCPXML and AAF, which their adapters do not write or read, are
  added to and read from the adapter's document by `interchange.documents`;
- media is named by a stable name (the file's name, with the start of its id where two files
  share one) and referenced by a relink path, or by a signed URL when asked;
- markers (opt-in) mark each transcript cut, on the piece that plays right after it.

Import is the reverse, for every format: every clip's media is matched to a file of the
project (by id where the file carries ours, else by name), and the timeline's tracks are replaced
in one save (one undo step). The cuts are real edits in the file, so the transcript's deleted
words are not carried over (they would be cut twice); its other words are placed on the imported
clips that play them (`transcript_onto`), and the report counts those kept and those dropped.

Work is bounded: an import's file size is checked before it is parsed, and the file is read in a
confined child (projects/edl/interchange/read.py, through auteur.core.untrusted): its shape (depth,
elements, entity declarations) and what its references expand to are checked against the
timeline's limits before an adapter builds anything, and the adapter runs under CPU, memory and
time limits. This process only matches the plain tracks the child answers to the project's media
and saves them. An export is at most the render's pieces of a timeline within its limits.
"""
