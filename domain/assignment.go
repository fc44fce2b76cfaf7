package domain

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Assignment maps each mqreader pod to its partition range. The partition
// controller writes it into the readers' ConfigMap (key AssignmentKey) and
// each reader finds its own range by pod name. Its JSON form is
//
//	{"replicas":3,"ranges":{"mqreader-0":"0-85","mqreader-1":"86-170","mqreader-2":"171-255"}}
type Assignment struct {
	Replicas int                       `json:"replicas"`
	Ranges   map[string]PartitionRange `json:"-"`
}

// AssignmentKey is the ConfigMap key (and file name) holding the assignment.
const AssignmentKey = "partitions.json"

// Assign splits the partitions among replicas pods named <statefulSet>-<ordinal>.
func Assign(statefulSet string, replicas int) (Assignment, error) {
	ranges, err := SplitPartitions(replicas)
	if err != nil {
		return Assignment{}, err
	}
	a := Assignment{Replicas: replicas, Ranges: make(map[string]PartitionRange, replicas)}
	for i, r := range ranges {
		a.Ranges[statefulSet+"-"+strconv.Itoa(i)] = r
	}
	return a, nil
}

// For returns the range of the named pod.
func (a Assignment) For(pod string) (PartitionRange, bool) {
	r, ok := a.Ranges[pod]
	return r, ok
}

type assignmentJSON struct {
	Replicas int               `json:"replicas"`
	Ranges   map[string]string `json:"ranges"`
}

// MarshalJSON writes ranges as "first-last" strings; encoding/json sorts the
// map keys, so equal assignments encode to equal bytes (the controller's
// checksum relies on it).
func (a Assignment) MarshalJSON() ([]byte, error) {
	out := assignmentJSON{Replicas: a.Replicas, Ranges: make(map[string]string, len(a.Ranges))}
	for pod, r := range a.Ranges {
		out.Ranges[pod] = r.String()
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the form MarshalJSON writes and checks that the ranges
// are valid and do not overlap.
func (a *Assignment) UnmarshalJSON(b []byte) error {
	var in assignmentJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("partition assignment: %w", err)
	}
	ranges := make(map[string]PartitionRange, len(in.Ranges))
	pods := make([]string, 0, len(in.Ranges))
	for pod, s := range in.Ranges {
		r, err := ParseRange(s)
		if err != nil {
			return fmt.Errorf("partition assignment for %s: %w", pod, err)
		}
		ranges[pod] = r
		pods = append(pods, pod)
	}
	sort.Slice(pods, func(i, j int) bool { return ranges[pods[i]].First < ranges[pods[j]].First })
	for i := 1; i < len(pods); i++ {
		if ranges[pods[i]].First <= ranges[pods[i-1]].Last {
			return fmt.Errorf("%w: %s (%s) overlaps %s (%s)", ErrInvalidRange, pods[i], ranges[pods[i]], pods[i-1], ranges[pods[i-1]])
		}
	}
	a.Replicas, a.Ranges = in.Replicas, ranges
	return nil
}
