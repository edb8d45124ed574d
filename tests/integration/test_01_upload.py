"""01: recordings upload whole, once, byte for byte.

An agent with file sources and --exit-when-done uploads through the real
broker to a real controller. Afterwards:
- every stored segment is byte-identical to the agent's kept copy
  (keep_sent_dir), ffprobe reads it, and the ledger's size/sha256 match it;
- the packets of all stored segments of a channel, in start order, are the
  source's packets (same bytes, same order, timestamps shifted by one
  constant per segment);
- usage --json counts each segment once and its bytes equal the files';
- nothing is left in the agent's spool or the controller's partial/.
"""

import pytest

from c2dtest import check_upload, file_channel, run

DEV = "rec-a"


@pytest.mark.timeout(600)
def test_h264_aac_and_h265(media, make_controller, make_agent):
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(1, media.h264_aac), file_channel(2, media.h265)])
    agent.start()
    agent.wait_done(420, ctl)
    segs = check_upload(ctl, agent, DEV, {1: [media.h264_aac], 2: [media.h265]}, 10)
    assert len([s for s in segs if s["channel"] == 1]) >= 11
    # run again: everything already stored, nothing changes
    agent.start()
    agent.wait_done(120, ctl)
    assert ctl.segments() == segs
    assert ctl.alive()


@pytest.mark.timeout(300)
def test_directory_source(media, make_controller, make_agent):
    """A directory of recordings named by time is read in name order as one
    continuous source."""
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(3, media.dir_source)], segment_seconds=4)
    agent.start()
    agent.wait_done(240, ctl)
    check_upload(ctl, agent, DEV, {3: media.dir_files()}, 4)


@pytest.mark.timeout(300)
def test_h264_g711_matroska(media, make_controller, make_agent, tmp_path):
    """H.264 + G.711 in Matroska: MPEG-TS cannot carry G.711 as audio, so
    only the video is compared, against the source remuxed to MPEG-TS by
    ffmpeg (Annex B, as libavformat's muxer writes it)."""
    ref = tmp_path / "ref.ts"
    run(["ffmpeg", "-nostdin", "-v", "error", "-i", media.h264_g711, "-map", "0:v", "-c", "copy",
         "-f", "mpegts", ref], timeout=120)
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(0, media.h264_g711)], chunk_bytes=32768)
    agent.start()
    agent.wait_done(240, ctl)
    check_upload(ctl, agent, DEV, {0: [ref]}, 10, types_by_ch={0: ["video"]})
