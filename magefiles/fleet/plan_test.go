package fleet_test

import (
	"slices"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
)

func amis(ids ...string) []fleet.AMI {
	var out []fleet.AMI
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, id := range ids {
		out = append(out, fleet.AMI{ID: id, State: "available", Created: t0.Add(time.Duration(i) * time.Hour), ImageSHA256: "sha-" + id, BuildID: "b-" + id, SnapshotIDs: []string{"snap-" + id}})
	}
	return out
}

func ids[T any](xs []T, id func(T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, id(x))
	}
	slices.Sort(out)
	return out
}

func amiID(a fleet.AMI) string           { return a.ID }
func instanceID(i fleet.Instance) string { return i.ID }

func TestRollbackTarget(t *testing.T) {
	a := amis("a1", "a2", "a3", "a4")
	if got, ok := fleet.RollbackTarget(a, "a3", "sha-a3"); !ok || got.ID != "a2" {
		t.Fatalf("rollback from a3 = %v %v, want a2", got.ID, ok)
	}
	if _, ok := fleet.RollbackTarget(a, "a1", "sha-a1"); ok {
		t.Fatal("the oldest AMI has nothing to roll back to")
	}
	a[1].ImageSHA256 = "sha-a3" // a rebake of the same image is not an earlier build
	if got, _ := fleet.RollbackTarget(a, "a3", "sha-a3"); got.ID != "a1" {
		t.Fatalf("rollback skipping a rebake of the live image = %v, want a1", got.ID)
	}
}

func TestMakePlan(t *testing.T) {
	a := amis("a1", "a2", "a3", "a4", "a5", "a6")
	live := fleet.Instance{ID: "i-live", ImageID: "a3", Role: fleet.RoleLive, State: "running"}
	st := &fleet.State{
		Record: fleet.Record{Type: "CNAME", Target: "ec2-live"},
		Live:   &live, LiveAMI: &a[2], Rollback: &a[1], AMIs: a,
		Instances: []fleet.Instance{
			live,
			{ID: "i-cand", ImageID: "a6", Role: fleet.RoleCandidate, State: "running"},
			{ID: "i-drain", ImageID: "a1", Role: fleet.RoleDraining, State: "running"},
		},
	}
	st.Snapshots = []fleet.Snapshot{{ID: "snap-a1", State: "completed"}, {ID: "snap-x", State: "completed"}, {ID: "snap-y", State: "pending"}, {ID: "snap-z", State: "error"}}
	p := fleet.MakePlan(st, 2)
	// Orphans whose upload ended go; one still uploading may be a bake in progress.
	if got, want := ids(p.DeleteSnapshots, func(s fleet.Snapshot) string { return s.ID }), []string{"snap-x", "snap-z"}; !slices.Equal(got, want) {
		t.Errorf("delete snapshots %v, want %v", got, want)
	}
	// Kept: the newest two (a6, a5), the live one (a3), the rollback target (a2).
	if got, want := ids(p.Keep, amiID), []string{"a2", "a3", "a5", "a6"}; !slices.Equal(got, want) {
		t.Errorf("keep %v, want %v", got, want)
	}
	if got, want := ids(p.Deregister, amiID), []string{"a1", "a4"}; !slices.Equal(got, want) {
		t.Errorf("deregister %v, want %v", got, want)
	}
	if got, want := ids(p.Terminate, instanceID), []string{"i-cand", "i-drain"}; !slices.Equal(got, want) {
		t.Errorf("terminate %v, want %v", got, want)
	}
	if p.KeepWhy["a3"] != "live" || p.KeepWhy["a2"] != "rollback target" {
		t.Errorf("reasons %v", p.KeepWhy)
	}

	// No record to judge by: instances tagged live stay, and so does their AMI.
	st = &fleet.State{AMIs: a, Instances: []fleet.Instance{{ID: "i-l", ImageID: "a1", Role: fleet.RoleLive, State: "running"}, {ID: "i-c", ImageID: "a2", Role: fleet.RoleCandidate, State: "pending"}}}
	p = fleet.MakePlan(st, 1)
	if got, want := ids(p.Keep, amiID), []string{"a1", "a6"}; !slices.Equal(got, want) {
		t.Errorf("no record: keep %v, want %v", got, want)
	}
	if got := ids(p.Terminate, instanceID); !slices.Equal(got, []string{"i-c"}) {
		t.Errorf("no record: terminate %v, want [i-c]", got)
	}
	if (fleet.Plan{}).Empty() != true || p.Empty() {
		t.Error("Empty")
	}
}
