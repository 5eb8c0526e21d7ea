// vcsim for Orlop's tests: govmomi's vCenter simulator (Debian's 0.24 source) on 127.0.0.1.
//
// It prints one JSON line ({"url": ..., "datastores": {name: local dir}}) once it serves, and
// runs until stdin closes or a signal arrives. Two gaps of vcsim 0.24 are filled the way a
// vCenter behaves, because Orlop's vsphere provider calls them: CreateVirtualDisk_Task makes
// the flat file as large as the disk's capacity (sparse), and ExtendVirtualDisk_Task (absent
// in 0.24) grows it, refusing to shrink.
package main

import (
	"encoding/json"
	"flag"
	"net/url"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// By value: vcsim's property code digs the mo type out of a wrapper's first field.
type diskManager struct{ simulator.VirtualDiskManager }

// flatFile maps "[ds] dir/x.vmdk" to the local path of its data file, x-flat.vmdk.
func flatFile(name string) (string, types.BaseMethodFault) {
	var p object.DatastorePath
	if !p.FromString(name) || !strings.HasSuffix(p.Path, ".vmdk") {
		return "", &types.InvalidDatastorePath{DatastorePath: name}
	}
	for _, e := range simulator.Map.All("Datastore") {
		if ds := e.(*simulator.Datastore); ds.Name == p.Datastore {
			flat := strings.TrimSuffix(p.Path, ".vmdk") + "-flat.vmdk"
			return path.Join(ds.Info.GetDatastoreInfo().Url, flat), nil
		}
	}
	return "", &types.InvalidDatastore{Name: p.Datastore}
}

func (m *diskManager) CreateVirtualDiskTask(ctx *simulator.Context, req *types.CreateVirtualDisk_Task) soap.HasFault {
	body := m.VirtualDiskManager.CreateVirtualDiskTask(ctx, req).(*methods.CreateVirtualDisk_TaskBody)
	task := simulator.Map.Get(body.Res.Returnval).(*simulator.Task)
	if spec, ok := req.Spec.(*types.FileBackedVirtualDiskSpec); ok && task.Info.Error == nil {
		if flat, fault := flatFile(req.Name); fault == nil {
			_ = os.Truncate(flat, spec.CapacityKb*1024)
		}
	}
	return body
}

func (m *diskManager) ExtendVirtualDiskTask(req *types.ExtendVirtualDisk_Task) soap.HasFault {
	task := simulator.CreateTask(m, "extendVirtualDisk", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		flat, fault := flatFile(req.Name)
		if fault != nil {
			return nil, fault
		}
		info, err := os.Stat(flat)
		if err != nil {
			return nil, &types.FileNotFound{FileFault: types.FileFault{File: req.Name}}
		}
		if req.NewCapacityKb*1024 < info.Size() {
			return nil, &types.InvalidArgument{InvalidProperty: "newCapacityKb"}
		}
		if err := os.Truncate(flat, req.NewCapacityKb*1024); err != nil {
			return nil, &types.CannotAccessFile{FileFault: types.FileFault{File: req.Name}}
		}
		return nil, nil
	})
	return &methods.ExtendVirtualDisk_TaskBody{
		Res: &types.ExtendVirtualDisk_TaskResponse{Returnval: task.Run()},
	}
}

func main() {
	username := flag.String("username", "orlop", "the one user vcsim accepts")
	passwordFile := flag.String("password-file", "", "file holding that user's password")
	flag.Parse()
	password, err := os.ReadFile(*passwordFile)
	if err != nil {
		panic(err)
	}

	model := simulator.VPX()
	model.Datastore = 2
	// vcsim 0.24 implements vSphere 6.7's first-class-disk snapshot calls but announces API
	// 6.5, and pyVmomi will not send a 6.7 call to a 6.5 server.
	model.ServiceContent.About.ApiVersion = "6.7"
	model.ServiceContent.About.Version = "6.7.0"
	if err := model.Create(); err != nil {
		panic(err)
	}
	defer model.Remove()
	vdm := simulator.Map.VirtualDiskManager().(*simulator.VirtualDiskManager)
	simulator.Map.Put(&diskManager{*vdm})

	model.Service.Listen = &url.URL{
		Host: "127.0.0.1:0",
		User: url.UserPassword(*username, strings.TrimSpace(string(password))),
	}
	server := model.Service.NewServer()
	defer server.Close()

	datastores := map[string]string{}
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		datastores[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}
	u := *server.URL
	u.User = nil
	_ = json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"url": u.String(), "datastores": datastores})

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { _, _ = os.Stdin.Read(make([]byte, 1)); stop <- syscall.SIGTERM }()
	<-stop
}
