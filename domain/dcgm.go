package domain

// FieldInfo is what we know about a DCGM exporter field: its unit and a
// one-line description.
type FieldInfo struct {
	Unit        string
	Description string
}

// dcgmFields are the fields of the shipped dump and the other common
// dcgm-exporter defaults (units as the exporter reports them). Metrics not
// listed are still stored and served; they just have no unit here.
var dcgmFields = map[string]FieldInfo{
	"DCGM_FI_DEV_GPU_UTIL":                    {"%", "GPU utilization: share of time a kernel was running"},
	"DCGM_FI_DEV_MEM_COPY_UTIL":               {"%", "Memory utilization: share of time device memory was read or written"},
	"DCGM_FI_DEV_ENC_UTIL":                    {"%", "Video encoder utilization"},
	"DCGM_FI_DEV_DEC_UTIL":                    {"%", "Video decoder utilization"},
	"DCGM_FI_DEV_POWER_USAGE":                 {"W", "Power draw"},
	"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION":    {"mJ", "Energy consumed since the driver loaded"},
	"DCGM_FI_DEV_GPU_TEMP":                    {"°C", "GPU temperature"},
	"DCGM_FI_DEV_MEMORY_TEMP":                 {"°C", "Memory (HBM) temperature"},
	"DCGM_FI_DEV_SM_CLOCK":                    {"MHz", "SM clock frequency"},
	"DCGM_FI_DEV_MEM_CLOCK":                   {"MHz", "Memory clock frequency"},
	"DCGM_FI_DEV_FB_USED":                     {"MiB", "Framebuffer memory used"},
	"DCGM_FI_DEV_FB_FREE":                     {"MiB", "Framebuffer memory free"},
	"DCGM_FI_DEV_FB_RESERVED":                 {"MiB", "Framebuffer memory reserved by the driver"},
	"DCGM_FI_DEV_PCIE_REPLAY_COUNTER":         {"", "PCIe replays (retries) since the driver loaded"},
	"DCGM_FI_DEV_XID_ERRORS":                  {"", "Last XID error code"},
	"DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL":      {"", "NVLink bandwidth counter, all lanes"},
	"DCGM_FI_PROF_GR_ENGINE_ACTIVE":           {"ratio", "Share of time the graphics engine was active"},
	"DCGM_FI_PROF_SM_ACTIVE":                  {"ratio", "Share of time at least one warp was active on an SM"},
	"DCGM_FI_PROF_SM_OCCUPANCY":               {"ratio", "Resident warps relative to the SM maximum"},
	"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE":         {"ratio", "Share of cycles the tensor pipe was active"},
	"DCGM_FI_PROF_DRAM_ACTIVE":                {"ratio", "Share of cycles device memory was sending or receiving"},
	"DCGM_FI_PROF_PCIE_TX_BYTES":              {"B/s", "PCIe transmit rate"},
	"DCGM_FI_PROF_PCIE_RX_BYTES":              {"B/s", "PCIe receive rate"},
	"DCGM_FI_DEV_VGPU_LICENSE_STATUS":         {"", "vGPU license status"},
	"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": {"", "Rows remapped for uncorrectable errors"},
	"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS":   {"", "Rows remapped for correctable errors"},
	"DCGM_FI_DEV_ROW_REMAP_FAILURE":           {"", "Whether a row remap failed"},
}

// DCGMField returns what we know about a DCGM field; ok is false for a
// metric we have no entry for (newer exporters add and rename fields).
func DCGMField(name string) (FieldInfo, bool) {
	f, ok := dcgmFields[name]
	return f, ok
}
