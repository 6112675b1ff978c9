package layout

import (
	"encoding/binary"
	"fmt"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Span is a byte range of the disk.
type Span struct {
	Start, Size int64
}

// End is the first byte after the span.
func (s Span) End() int64 { return s.Start + s.Size }

// gptReserve is what a GPT keeps at the end of the disk: the backup header
// and its 128-entry partition array (1 + 32 sectors).
const gptReserve = 33 * SectorSize

// BootSpan is where a disk's single boot partition goes: from 1 MiB to the last
// whole MiB before the backup GPT (which an MBR disk leaves unused too, so both
// tables give the same span), at most MaxFilesystem.
func BootSpan(diskSize int64) (Span, error) {
	end := (diskSize - gptReserve) / Alignment * Alignment
	if end <= Alignment {
		return Span{}, fmt.Errorf("a %d-byte disk has no room for a partition after the first MiB; use an image_size of at least 64MiB", diskSize)
	}
	return Span{Start: Alignment, Size: min(end-Alignment, MaxFilesystem)}, nil
}

// GPTPartition is one entry of a GUID partition table.
type GPTPartition struct {
	Type gpt.Type
	Name string
	Span Span
}

// WriteGPT writes a protective MBR and a GPT (primary and backup) holding
// parts. The disk GUID and partition GUIDs derive from the disk's seed.
func WriteGPT(d *Disk, parts ...GPTPartition) error {
	t := &gpt.Table{
		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
		ProtectiveMBR:      true,
		GUID:               d.UUID("gpt/disk"),
	}
	for i, p := range parts {
		if err := checkSpan(d, p.Span); err != nil {
			return fmt.Errorf("GPT partition %d: %w", i+1, err)
		}
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: i + 1,
			Start: uint64(p.Span.Start / SectorSize),
			End:   uint64(p.Span.End()/SectorSize - 1),
			Type:  p.Type,
			Name:  p.Name,
			GUID:  d.UUID(fmt.Sprintf("gpt/partition/%d", i+1)),
		})
	}
	w, err := d.Storage().Writable()
	if err != nil {
		return err
	}
	if err := t.Write(w, d.Size); err != nil {
		return fmt.Errorf("writing the GPT: %w", err)
	}
	// go-diskfs stores the protective partition's size as uint32(last LBA),
	// which wraps above 2 TiB; the UEFI spec says 0xFFFFFFFF there.
	if last := d.Size/SectorSize - 1; last > 0xFFFFFFFF {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], 0xFFFFFFFF)
		if _, err := d.WriteAt(b[:], 446+12); err != nil {
			return fmt.Errorf("writing the protective MBR's size: %w", err)
		}
	}
	return nil
}

// MBRPartition is one primary partition of an MBR (DOS) partition table.
type MBRPartition struct {
	Type     mbr.Type
	Bootable bool
	Span     Span
}

// WriteMBR writes an MBR partition table holding parts, with a disk signature
// derived from the disk's seed (Linux shows it in PARTUUIDs).
func WriteMBR(d *Disk, parts ...MBRPartition) error {
	if len(parts) > 4 {
		return fmt.Errorf("an MBR holds at most 4 primary partitions, not %d", len(parts))
	}
	t := &mbr.Table{LogicalSectorSize: SectorSize, PhysicalSectorSize: SectorSize}
	for i, p := range parts {
		if err := checkSpan(d, p.Span); err != nil {
			return fmt.Errorf("MBR partition %d: %w", i+1, err)
		}
		if p.Span.End()/SectorSize > 0xFFFFFFFF {
			return fmt.Errorf("MBR partition %d ends beyond the 2 TiB an MBR can address", i+1)
		}
		t.Partitions = append(t.Partitions, &mbr.Partition{
			Index:    i + 1,
			Bootable: p.Bootable,
			Type:     p.Type,
			Start:    uint32(p.Span.Start / SectorSize),
			Size:     uint32(p.Span.Size / SectorSize),
		})
	}
	w, err := d.Storage().Writable()
	if err != nil {
		return err
	}
	if err := t.Write(w, d.Size); err != nil {
		return fmt.Errorf("writing the MBR: %w", err)
	}
	var sig [4]byte
	binary.LittleEndian.PutUint32(sig[:], d.ID32("mbr/signature"))
	if _, err := d.WriteAt(sig[:], 440); err != nil {
		return fmt.Errorf("writing the MBR disk signature: %w", err)
	}
	return nil
}

func checkSpan(d *Disk, s Span) error {
	switch {
	case s.Start%SectorSize != 0 || s.Size%SectorSize != 0:
		return fmt.Errorf("span %+v is not whole %d-byte sectors", s, SectorSize)
	case s.Start < SectorSize || s.Size <= 0 || s.End() > d.Size:
		return fmt.Errorf("span %+v does not fit a %d-byte disk", s, d.Size)
	}
	return nil
}
