package turbine

// IEC 61400-25 point names of a turbine.
const (
	PointW        = "WTUR.W"             // active power, kW
	PointVAr      = "WTUR.VAr"           // reactive power, kvar
	PointTurSt    = "WTUR.TurSt"         // state, see State
	PointDmdW     = "WTUR.DmdW"          // effective active power setpoint, kW
	PointTotWh    = "WTUR.TotWh"         // total active energy, Wh
	PointRotSpd   = "WROT.RotSpd"        // rotor speed, rpm
	PointPtAngBl1 = "WROT.PtAngValBl1"   // pitch angle blade 1, deg
	PointPtAngBl2 = "WROT.PtAngValBl2"   // pitch angle blade 2, deg
	PointPtAngBl3 = "WROT.PtAngValBl3"   // pitch angle blade 3, deg
	PointGnSpd    = "WGEN.GnSpd"         // generator speed, rpm
	PointGnTmpSta = "WGEN.GnTmpSta"      // generator stator winding temperature, °C
	PointGbxOil   = "WTRM.TrmTmpGbxOil"  // gearbox oil temperature, °C
	PointShfBrg1  = "WTRM.TrmTmpShfBrg1" // main shaft bearing temperature, °C
	PointWdSpd    = "WNAC.WdSpd"         // nacelle wind speed, m/s
	PointWdDir    = "WNAC.WdDir"         // wind direction, deg
	PointNacDir   = "WNAC.Dir"           // nacelle direction, deg
	PointExTmp    = "WNAC.ExTmp"         // outside temperature, °C
	PointIceSt    = "WNAC.IceSt"         // ice detected, 0/1
	PointHz       = "WCNV.Hz"            // grid frequency, Hz
	PointGriPPV   = "WCNV.GriPPV"        // grid phase-to-phase voltage, V
)

// IEC 61400-25 point names of a met mast.
const (
	PointMetWdSpd = "WMET.HorWdSpd" // horizontal wind speed, m/s
	PointMetWdDir = "WMET.HorWdDir" // horizontal wind direction, deg
	PointMetTmp   = "WMET.EnvTmp"   // air temperature, °C
	PointMetPres  = "WMET.EnvPres"  // air pressure, hPa
	PointMetHum   = "WMET.RelHum"   // relative humidity, %
)

// Service names of a turbine (thing model services and Modbus command coils).
const (
	ServiceSetPowerLimit = "setPowerLimit"
	ServiceStart         = "start"
	ServiceStop          = "stop"
	ServiceResetFault    = "resetFault"
)

// ParamPowerLimit is the input parameter of setPowerLimit (kW).
const ParamPowerLimit = "powerLimit"
